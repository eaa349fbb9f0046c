//! A second, independent verifier of ceremony directories, written from
//! docs/formats.md ("Ceremony directories: a verifier's specification")
//! alone, with generic JSON and the RustCrypto primitives, none of the
//! crate's code. It must reach the same verdict as `ceremony::verify` on
//! every committed fixture (`tests/data/ceremony/`): if the two disagree,
//! the spec is incomplete or wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

fn data() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ceremony")
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("base64: {e}"))
}

/// `v` is an object with exactly the members `required` (and maybe `optional`).
fn members<'a>(
    v: &'a Value,
    required: &[&str],
    optional: &[&str],
) -> Result<&'a Map<String, Value>, String> {
    let o = v.as_object().ok_or("not an object")?;
    for k in o.keys() {
        if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
            return Err(format!("unknown member {k}"));
        }
    }
    for k in required {
        if !o.contains_key(*k) {
            return Err(format!("missing member {k}"));
        }
    }
    Ok(o)
}

fn string<'a>(o: &'a Map<String, Value>, k: &str) -> Result<&'a str, String> {
    o[k].as_str().ok_or_else(|| format!("{k} is not a string"))
}

enum Key {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl Key {
    /// Section 4: P-256, then P-384, then RSA of 3072 to 4096 bits.
    fn parse(der: &[u8]) -> Result<Key, String> {
        use p256::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(Key::P256(k));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(Key::P384(k));
        }
        let k = rsa::RsaPublicKey::from_public_key_der(der).map_err(|e| e.to_string())?;
        if !(3072..=4096).contains(&k.n().bits()) {
            return Err("RSA size".into());
        }
        Ok(Key::Rsa(k))
    }

    /// Section 5's table.
    fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        match self {
            Key::P256(k) => p256::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| s.normalize_s().is_none() && k.verify(message, &s).is_ok()),
            Key::P384(k) => p384::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| s.normalize_s().is_none() && k.verify(message, &s).is_ok()),
            Key::Rsa(k) => {
                let hashed = Sha256::digest(message);
                k.verify(rsa::Pss::new_with_salt::<Sha256>(32), &hashed, sig)
                    .is_ok()
            }
        }
    }
}

struct PolicyKey {
    name: String,
    keyid: String,
    key: Key,
}

fn read_policy(bytes: &[u8]) -> Result<(usize, Vec<PolicyKey>), String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let o = members(&v, &["format", "threshold", "custodians"], &[])?;
    if o["format"] != "byok-ceremony/custodian-policy/v1" {
        return Err("policy format".into());
    }
    let list = o["custodians"].as_array().ok_or("custodians")?;
    let threshold = o["threshold"].as_u64().ok_or("threshold")? as usize;
    if threshold < 1 || threshold > list.len() {
        return Err("threshold".into());
    }
    let mut keys: Vec<PolicyKey> = Vec::new();
    for c in list {
        let c = members(c, &["name", "public_key"], &[])?;
        let der = b64(string(c, "public_key")?.trim())?;
        let keyid = sha256_hex(&der);
        let name = string(c, "name")?.to_string();
        if keys.iter().any(|k| k.keyid == keyid || k.name == name) {
            return Err("duplicate custodian or key".into());
        }
        keys.push(PolicyKey {
            name,
            keyid,
            key: Key::parse(&der)?,
        });
    }
    Ok((threshold, keys))
}

/// Section 1: the entries, the digest.
fn read_transcript(bytes: &[u8]) -> Result<(Vec<Value>, String), String> {
    if bytes.is_empty() || !bytes.ends_with(b"\n") {
        return Err("empty or incomplete transcript".into());
    }
    let mut prev = "0".repeat(64);
    let mut entries = Vec::new();
    for (i, line) in bytes[..bytes.len() - 1].split(|b| *b == b'\n').enumerate() {
        let v: Value = serde_json::from_slice(line).map_err(|e| format!("line {i}: {e}"))?;
        let o = members(&v, &["seq", "time", "step", "prev_sha256", "data"], &[])?;
        if o["seq"].as_u64() != Some(i as u64) {
            return Err(format!("line {i}: seq"));
        }
        if o["prev_sha256"].as_str() != Some(prev.as_str()) {
            return Err(format!("line {i}: chain"));
        }
        string(o, "time")?;
        string(o, "step")?;
        prev = sha256_hex(line);
        entries.push(v);
    }
    Ok((entries, prev))
}

fn finished(entries: &[Value]) -> bool {
    let closing = match entries[0]["step"].as_str() {
        Some("ceremony-start") => "ceremony-complete",
        Some("wrap-start") => "outputs",
        _ => return false,
    };
    entries.len() >= 2 && entries[entries.len() - 1]["step"] == closing
}

/// Section 3, on disk: sorted `(path, sha256)`.
fn files_on_disk(root: &Path, rel: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let dir = root.join(rel);
    for e in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let name = e.file_name().into_string().map_err(|_| "name")?;
        if rel.is_empty() && (name == "transcript.jsonl" || name == "attestations") {
            continue;
        }
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let t = std::fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
        if t.is_dir() {
            files_on_disk(root, &path, out)?;
        } else if t.is_file() {
            let limit = if path == "SUMMARY.md" {
                64 << 20
            } else {
                64 << 10
            };
            if t.len() > limit {
                return Err(format!("{path} too large"));
            }
            let bytes = std::fs::read(e.path()).map_err(|e| e.to_string())?;
            out.push((path, sha256_hex(&bytes)));
        } else {
            return Err(format!("{path} is not a regular file"));
        }
    }
    Ok(())
}

/// The whole verification; the distinct signers on success.
fn verify_per_spec(dir: &Path, policy: &[u8]) -> Result<Vec<String>, String> {
    let (threshold, keys) = read_policy(policy)?;
    let tpath = dir.join("transcript.jsonl");
    if !std::fs::symlink_metadata(&tpath)
        .map_err(|e| e.to_string())?
        .is_file()
    {
        return Err("transcript is not a regular file".into());
    }
    let (entries, digest) = read_transcript(&std::fs::read(tpath).map_err(|e| e.to_string())?)?;
    let ceremony_id = entries[0]["data"]["ceremony_id"]
        .as_str()
        .ok_or("no ceremony_id")?;
    let complete = finished(&entries);
    let mut on_disk = Vec::new();
    files_on_disk(dir, "", &mut on_disk)?;
    on_disk.sort();
    let mut recorded = BTreeMap::new();
    for e in &entries {
        for o in e["data"]["outputs"].as_array().into_iter().flatten() {
            if let (Some(p), Some(h)) = (o["path"].as_str(), o["sha256"].as_str()) {
                recorded.insert(p.to_string(), h.to_string());
            }
        }
    }
    let disk: BTreeMap<String, String> = on_disk.iter().cloned().collect();
    if disk != recorded {
        return Err("files differ from the transcript".into());
    }
    let expected_outputs: Vec<Value> = on_disk
        .iter()
        .map(|(p, h)| serde_json::json!({"path": p, "sha256": h}))
        .collect();

    let att = dir.join("attestations");
    let mut names = Vec::new();
    if let Ok(m) = std::fs::symlink_metadata(&att) {
        if !m.is_dir() {
            return Err("attestations is not a directory".into());
        }
        for e in std::fs::read_dir(&att).map_err(|e| e.to_string())? {
            names.push(
                e.map_err(|e| e.to_string())?
                    .file_name()
                    .into_string()
                    .map_err(|_| "name")?,
            );
        }
    }
    names.sort();
    let mut signers = BTreeSet::new();
    for file in names {
        let p = att.join(&file);
        let custodian = file
            .strip_suffix(".dsse.json")
            .filter(|_| std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()))
            .ok_or_else(|| format!("{file}: not an envelope"))?;
        let env: Value = serde_json::from_slice(&std::fs::read(&p).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let env = members(&env, &["payload", "payloadType", "signatures"], &[])?;
        let ptype = string(env, "payloadType")?;
        if ptype != "application/vnd.byok-ceremony.attestation.v1+json" {
            return Err("payload type".into());
        }
        let body = b64(string(env, "payload")?)?;
        let payload: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let pl = members(
            &payload,
            &[
                "format",
                "ceremony_id",
                "custodian",
                "transcript_sha256",
                "transcript_entries",
                "outputs",
                "confirmation",
                "signed_at",
            ],
            &["partial"],
        )?;
        let partial = pl.get("partial").map_or(Some(false), Value::as_bool);
        if pl["format"] != "byok-ceremony/attestation/v1"
            || pl["custodian"] != custodian
            || partial != Some(!complete)
            || pl["ceremony_id"] != ceremony_id
            || pl["transcript_sha256"] != digest.as_str()
            || pl["transcript_entries"].as_u64() != Some(entries.len() as u64)
            || pl["outputs"] != Value::Array(expected_outputs.clone())
        {
            return Err(format!("{file}: payload does not attest this directory"));
        }
        let mut message = format!("DSSEv1 {} {ptype} {} ", ptype.len(), body.len()).into_bytes();
        message.extend_from_slice(&body);
        let sigs = env["signatures"].as_array().ok_or("signatures")?;
        if sigs.is_empty() {
            return Err("no signature".into());
        }
        let mut seen = BTreeSet::new();
        for s in sigs {
            let s = members(s, &["keyid", "sig"], &[])?;
            let sig = b64(string(s, "sig")?)?;
            let keyid = string(s, "keyid")?;
            let hinted = keys.iter().find(|k| k.keyid == keyid);
            let signer = hinted
                .filter(|k| k.key.verifies(&message, &sig))
                .or_else(|| keys.iter().find(|k| k.key.verifies(&message, &sig)))
                .ok_or_else(|| format!("{file}: no policy key verifies"))?;
            if signer.name != custodian || signer.keyid != keyid || !seen.insert(&signer.name) {
                return Err(format!("{file}: wrong signer, keyid or a duplicate"));
            }
            if !signers.insert(signer.name.clone()) {
                return Err(format!("{file}: second attestation"));
            }
        }
    }
    if signers.len() < threshold {
        return Err("threshold".into());
    }
    Ok(signers.into_iter().collect())
}

#[test]
fn the_spec_and_the_code_agree_on_every_fixture() {
    let policy_bytes = std::fs::read(data().join("policy.json")).unwrap();
    let policy = byok_ceremony::ceremony::Policy::parse(&policy_bytes).unwrap();
    let mut cases = 0;
    let (mut accepted, mut refused) = (0, 0);
    for e in std::fs::read_dir(data()).unwrap() {
        let e = e.unwrap();
        if !e.file_type().unwrap().is_dir() || e.file_name() == "keys" {
            continue;
        }
        let dir = e.path();
        let code = byok_ceremony::ceremony::verify(&dir, &policy);
        let spec = verify_per_spec(&dir, &policy_bytes);
        match (&code, &spec) {
            (Ok(v), Ok(signers)) => {
                assert_eq!(v.signers(), signers.as_slice(), "{}", dir.display());
                accepted += 1;
            }
            (Err(_), Err(_)) => refused += 1,
            _ => panic!(
                "{}: the code says {:?}, the spec says {:?}",
                dir.display(),
                code.map(|v| v.signers().to_vec()),
                spec
            ),
        }
        cases += 1;
    }
    assert_eq!((cases, accepted, refused), (21, 4, 17));
}
