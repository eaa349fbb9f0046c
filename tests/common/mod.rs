//! Test fixtures: a fresh SoftHSM2 token per test, a software RSA key pair
//! playing KMS, import-parameters files, and software unwrapping exactly as
//! KMS does it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const USER_PIN: &str = "87654321";
pub const SO_PIN: &str = "12345678";

pub fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A fresh SoftHSM2 token in its own directory.
pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub label: String,
    /// The PKCS#11 module: Debian's SoftHSM2 2.6.1, or a SoftHSM 2.7.0 build.
    pub module: PathBuf,
}

/// The environment variable `scripts/test.sh` sets to the SoftHSM 2.7.0
/// module that `scripts/softhsm27.sh` built.
pub const SOFTHSM27_ENV: &str = "BYOK_TEST_SOFTHSM27_MODULE";

/// The SoftHSM 2.7.0 module and its `softhsm2-util` (installed next to it by
/// `make install`). Missing is a failure, never a skip.
pub fn softhsm27() -> (PathBuf, PathBuf) {
    let module = PathBuf::from(std::env::var_os(SOFTHSM27_ENV).unwrap_or_else(|| {
        panic!(
            "{SOFTHSM27_ENV} is not set: build SoftHSM 2.7.0 with `export {SOFTHSM27_ENV}=\"$(scripts/softhsm27.sh)\"` (scripts/test.sh does this)"
        )
    }));
    assert!(
        module.is_file(),
        "{SOFTHSM27_ENV}={} does not exist: run scripts/softhsm27.sh again",
        module.display()
    );
    let util = module
        .ancestors()
        .nth(3)
        .map(|prefix| prefix.join("bin/softhsm2-util"))
        .filter(|u| u.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no bin/softhsm2-util in the install prefix of {}: {SOFTHSM27_ENV} must be PREFIX/lib/softhsm/libsofthsm2.so as scripts/softhsm27.sh prints it",
                module.display()
            )
        });
    (module, util)
}

impl SoftHsm {
    /// A fresh token on Debian's SoftHSM2 2.6.1.
    pub fn new(label: &str) -> Self {
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "SoftHSM2 is not installed: run scripts/install-deps.sh (apt-get install softhsm2)"
        );
        Self::init(
            label,
            PathBuf::from(SOFTHSM_MODULE),
            PathBuf::from("softhsm2-util"),
        )
    }

    /// A fresh token on SoftHSM 2.7.0 (built by `scripts/softhsm27.sh`),
    /// initialized by 2.7.0's own `softhsm2-util`.
    pub fn v27(label: &str) -> Self {
        let (module, util) = softhsm27();
        Self::init(label, module, util)
    }

    fn init(label: &str, module: PathBuf, util: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let out = Command::new(&util)
            .env("SOFTHSM2_CONF", &conf)
            .arg("--module")
            .arg(&module)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                USER_PIN,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SoftHsm {
            dir,
            conf,
            label: label.to_string(),
            module,
        }
    }

    /// `byok-airgap` with this token selected and the PIN in an environment variable.
    pub fn airgap(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_byok-airgap"));
        c.env("SOFTHSM2_CONF", &self.conf)
            .env("BYOK_TEST_PIN", USER_PIN)
            .env_remove("BYOK_PKCS11_MODULE");
        c
    }

    pub fn hsm_args(&self) -> Vec<String> {
        vec![
            "--module".into(),
            self.module.to_string_lossy().into_owned(),
            "--token-label".into(),
            self.label.clone(),
            "--pin-env".into(),
            "BYOK_TEST_PIN".into(),
        ]
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A software RSA key pair playing the KMS wrapping key.
pub struct FakeKms {
    pub key: RsaPrivateKey,
}

impl FakeKms {
    pub fn new(bits: usize) -> Self {
        FakeKms {
            key: RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).unwrap(),
        }
    }

    pub fn public_der(&self) -> Vec<u8> {
        self.key
            .to_public_key()
            .to_public_key_der()
            .unwrap()
            .into_vec()
    }

    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.public_der()))
    }

    /// Write import parameters as the AWS CLI prints them, valid for `minutes`.
    pub fn write_params(&self, path: &Path, minutes: i64) -> Vec<u8> {
        // Unique per wrapping key, as KMS's tokens are.
        let seed = Sha256::digest(self.public_der());
        let token: Vec<u8> = (0..1200usize).map(|i| seed[i % 32] ^ (i as u8)).collect();
        let valid_to = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
        let json = format!(
            "{{\n    \"KeyId\": \"arn:aws:kms:eu-west-1:111122223333:key/0b6d3bb4-6b4f-4f3c-9a55-5b2b7c6f0e11\",\n    \"ImportToken\": \"{}\",\n    \"PublicKey\": \"{}\",\n    \"ParametersValidTo\": \"{}\"\n}}\n",
            b64().encode(&token),
            b64().encode(self.public_der()),
            valid_to.format(&time::format_description::well_known::Rfc3339).unwrap()
        );
        std::fs::write(path, &json).unwrap();
        token
    }

    fn oaep(&self, hash: &str, c: &[u8]) -> Vec<u8> {
        let padding = if hash == "SHA_1" {
            rsa::Oaep::new::<sha1::Sha1>()
        } else {
            rsa::Oaep::new::<sha2::Sha256>()
        };
        self.key.decrypt(padding, c).expect("OAEP part decrypts")
    }

    /// Unwrap as KMS does for `algorithm`.
    pub fn unwrap(&self, algorithm: &str, blob: &[u8]) -> Vec<u8> {
        let hash = if algorithm.ends_with("SHA_1") {
            "SHA_1"
        } else {
            "SHA_256"
        };
        if algorithm.starts_with("RSAES_OAEP") {
            assert_eq!(blob.len(), self.key.size());
            return self.oaep(hash, blob);
        }
        let k = self.key.size();
        let aes = self.oaep(hash, &blob[..k]);
        assert_eq!(aes.len(), 32, "RSA_AES_KEY_WRAP carries an AES-256 key");
        let kek = aes_kw::KekAes256::try_from(aes.as_slice()).unwrap();
        kek.unwrap_with_padding_vec(&blob[k..])
            .expect("RFC 5649 unwrap")
    }
}

/// Run and return output; print it on failure for diagnosis.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("command runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The entries of `dir`, to prove a failed run left nothing behind.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn aes_kcv(key: &[u8]) -> String {
    use cmac::Mac;
    let mut mac = <cmac::Cmac<aes::Aes256> as Mac>::new_from_slice(key).unwrap();
    mac.update(&[0u8; 16]);
    hex::encode(&mac.finalize().into_bytes()[..3])
}

pub fn hmac_hex(spec: &str, key: &[u8], msg: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    macro_rules! h {
        ($d:ty) => {{
            let mut m = <Hmac<$d> as Mac>::new_from_slice(key).unwrap();
            m.update(msg);
            hex::encode(m.finalize().into_bytes())
        }};
    }
    match spec {
        "HMAC_224" => h!(sha2::Sha224),
        "HMAC_256" => h!(sha2::Sha256),
        "HMAC_384" => h!(sha2::Sha384),
        _ => h!(sha2::Sha512),
    }
}

/// The SPKI DER of the public key of an unwrapped PKCS#8 EC or RSA key.
pub fn public_of_pkcs8(spec: &str, pkcs8: &[u8]) -> Vec<u8> {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey as _};
    match spec {
        "ECC_NIST_P256" => p256::SecretKey::from_pkcs8_der(pkcs8)
            .unwrap()
            .public_key()
            .to_public_key_der()
            .unwrap()
            .into_vec(),
        "ECC_NIST_P384" => p384::SecretKey::from_pkcs8_der(pkcs8)
            .unwrap()
            .public_key()
            .to_public_key_der()
            .unwrap()
            .into_vec(),
        "ECC_NIST_P521" => p521::SecretKey::from_pkcs8_der(pkcs8)
            .unwrap()
            .public_key()
            .to_public_key_der()
            .unwrap()
            .into_vec(),
        "ECC_SECG_P256K1" => k256::SecretKey::from_pkcs8_der(pkcs8)
            .unwrap()
            .public_key()
            .to_public_key_der()
            .unwrap()
            .into_vec(),
        _ => {
            let k = <RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(pkcs8).unwrap();
            assert_eq!(k.primes().len(), 2, "KMS needs a two-prime RSA key");
            let bits = k.n().bits();
            assert!([2048, 3072, 4096].contains(&bits));
            k.to_public_key().to_public_key_der().unwrap().into_vec()
        }
    }
}

/// Check a wrap's output against the plaintext recovered by software unwrap.
pub fn check_output(
    kms: &FakeKms,
    out: &Path,
    spec: &str,
    algorithm: &str,
    token: &[u8],
) -> serde_json::Value {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["key_spec"], spec);
    assert_eq!(manifest["wrapping_algorithm"], algorithm);
    assert_eq!(manifest["wrapping_key_sha256"], kms.fingerprint());
    assert_eq!(std::fs::read(out.join("ImportToken.bin")).unwrap(), token);
    assert_eq!(
        manifest["import_token_sha256"],
        hex::encode(Sha256::digest(token))
    );
    let blob = std::fs::read(out.join("EncryptedKeyMaterial.bin")).unwrap();
    assert_eq!(
        manifest["encrypted_key_material_sha256"],
        hex::encode(Sha256::digest(&blob))
    );
    let p = manifest["hsm_key"]["protection"].clone();
    assert_eq!(p["sensitive"], true, "key must be CKA_SENSITIVE");
    assert_eq!(p["extractable"], true);
    let plain = kms.unwrap(algorithm, &blob);
    match spec {
        "SYMMETRIC_DEFAULT" => {
            assert_eq!(plain.len(), 32);
            assert_eq!(manifest["kcv"], aes_kcv(&plain));
        }
        s if s.starts_with("HMAC_") => {
            let len: usize = s[5..].parse::<usize>().unwrap() / 8;
            assert_eq!(plain.len(), len);
            let check = &manifest["hmac_check"];
            let msg = hex::decode(check["message_hex"].as_str().unwrap()).unwrap();
            assert_eq!(check["mac_hex"], hmac_hex(s, &plain, &msg));
            assert_eq!(check["mac_algorithm"], format!("HMAC_SHA_{}", &s[5..]));
        }
        _ => {
            let public = b64()
                .decode(manifest["public_key"].as_str().unwrap())
                .unwrap();
            assert_eq!(
                public_of_pkcs8(spec, &plain),
                public,
                "unwrapped key's public key equals the HSM's"
            );
        }
    }
    manifest
}

/// A fresh NSS softoken database: a second, independent PKCS#11 implementation
/// that does RSA-OAEP with SHA-256 and RFC 5649 as `CKM_AES_KEY_WRAP_KWP`.
pub struct NssDb {
    pub dir: tempfile::TempDir,
    pub module: PathBuf,
}

pub const NSS_PIN: &str = "nss-test-pin-1";
pub const NSS_TOKEN: &str = "NSS Certificate DB";

impl NssDb {
    pub fn new() -> Self {
        let module = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
            .iter()
            .map(|d| Path::new(d).join("libsoftokn3.so"))
            .find(|p| p.exists())
            .expect("NSS softoken is not installed: run scripts/install-deps.sh (apt-get install libnss3 libnss3-tools)");
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, format!("{NSS_PIN}\n")).unwrap();
        let out = Command::new("certutil")
            .args([
                "-N",
                "-d",
                &format!("sql:{}", db.display()),
                "-f",
                pw.to_str().unwrap(),
            ])
            .output()
            .expect("certutil runs (apt-get install libnss3-tools)");
        assert!(
            out.status.success(),
            "certutil -N failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        NssDb { dir, module }
    }

    pub fn init_string(&self) -> String {
        format!(
            "configdir='sql:{}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=",
            self.dir.path().join("db").display()
        )
    }

    pub fn airgap(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_byok-airgap"));
        c.env("BYOK_TEST_PIN", NSS_PIN)
            .env_remove("BYOK_PKCS11_MODULE");
        c
    }

    pub fn hsm_args(&self) -> Vec<String> {
        vec![
            "--module".into(),
            self.module.to_string_lossy().into_owned(),
            "--module-init-string".into(),
            self.init_string(),
            "--token-label".into(),
            NSS_TOKEN.into(),
            "--pin-env".into(),
            "BYOK_TEST_PIN".into(),
        ]
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// What the CLI tests need of a token fixture.
pub trait TestToken {
    /// `byok-airgap` with the fixture's environment.
    fn command(&self) -> Command;
    /// `--module … --token-label … --pin-env …` for the fixture.
    fn selection(&self) -> Vec<String>;
    /// A path in the fixture's temporary directory.
    fn file(&self, name: &str) -> PathBuf;
}

impl TestToken for SoftHsm {
    fn command(&self) -> Command {
        self.airgap()
    }
    fn selection(&self) -> Vec<String> {
        self.hsm_args()
    }
    fn file(&self, name: &str) -> PathBuf {
        self.path(name)
    }
}

impl TestToken for NssDb {
    fn command(&self) -> Command {
        self.airgap()
    }
    fn selection(&self) -> Vec<String> {
        self.hsm_args()
    }
    fn file(&self, name: &str) -> PathBuf {
        self.path(name)
    }
}

/// Arguments of `byok-airgap wrap` for one key, confirmed with `fp`.
pub fn wrap_args(
    t: &impl TestToken,
    params: &Path,
    spec: &str,
    alg: &str,
    label: &str,
    fp: &str,
    out: &Path,
) -> Vec<String> {
    let mut a = bastion_wrap_args(
        t,
        params.to_str().unwrap(),
        spec,
        label,
        fp,
        out.to_str().unwrap(),
    );
    a.extend(["--wrapping-algorithm".to_string(), alg.to_string()]);
    a
}

/// Wrap a new key for fresh parameters and check the output by unwrapping it.
pub fn wrap_ok(
    t: &impl TestToken,
    kms: &FakeKms,
    spec: &str,
    alg: &str,
    label: &str,
) -> serde_json::Value {
    let params = t.file(&format!("{label}.params.json"));
    let token = kms.write_params(&params, 60 * 23);
    let out = t.file(&format!("{label}.out"));
    let o = run(t.command().args(wrap_args(
        t,
        &params,
        spec,
        alg,
        label,
        &kms.fingerprint(),
        &out,
    )));
    assert!(o.status.success(), "{spec} {alg}: {}", stderr(&o));
    check_output(kms, &out, spec, alg, &token)
}

/// Copy a directory tree (to tamper with a copy).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// `byok-airgap wrap` on `t` of parameters `byok-bastion prepare` wrote
/// (see [`bastion_wrap_args`]); it must succeed.
pub fn bastion_wrap(
    t: &impl TestToken,
    params: &Path,
    spec: &str,
    label: &str,
    fp: &str,
    out: &Path,
) {
    let o = run(t.command().args(bastion_wrap_args(
        t,
        params.to_str().unwrap(),
        spec,
        label,
        fp,
        out.to_str().unwrap(),
    )));
    assert!(o.status.success(), "wrap {label}: {}", stderr(&o));
}

/// Arguments of `byok-airgap wrap` with parameters that name their own
/// algorithm (as `byok-bastion prepare` writes them).
pub fn bastion_wrap_args(
    t: &impl TestToken,
    params: &str,
    spec: &str,
    label: &str,
    fp: &str,
    out: &str,
) -> Vec<String> {
    let mut a = vec!["wrap".to_string()];
    a.extend(t.selection());
    a.extend(
        [
            "--params",
            params,
            "--key-spec",
            spec,
            "--label",
            label,
            "--expect-wrapping-key-sha256",
            fp,
            "--out",
            out,
        ]
        .map(String::from),
    );
    a
}

/// Compile one of `tests/data/*.c` into a shared object (once per test binary).
pub fn shared_object(name: &str) -> PathBuf {
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<std::collections::BTreeMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.c"));
    let dir = tempfile::tempdir().unwrap().keep();
    let so = dir.join(format!("lib{name}.so"));
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("cc runs (scripts/install-deps.sh installs gcc)");
    assert!(o.status.success(), "cc failed: {}", stderr(&o));
    built.insert(name.to_string(), so.clone());
    so
}

/// The parameters digest of a ceremony file's parameters, as the bastion
/// computes it from its own copy (`byok-bastion params-digest`).
pub fn params_digest(ceremony_file: &Path) -> String {
    byok_ceremony::ceremony::file::parameters_digest_of(
        ceremony_file,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap()
    .1
    .hex()
}

/// Direct PKCS#11 access to a test token, for tests that play an attacker
/// with access to the token between runs.
pub mod pkcs11 {
    use super::*;
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::Attribute;
    use cryptoki::session::{Session, UserType};
    use std::sync::Mutex;

    static IN_PROCESS: Mutex<()> = Mutex::new(());

    /// Log in to `hsm`'s token as the user in this process and run `f`.
    pub fn with_session<R>(hsm: &SoftHsm, f: impl FnOnce(&Session) -> R) -> R {
        let _one_at_a_time = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        // SoftHSM2 reads its configuration at C_Initialize.
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
        let ctx = Pkcs11::new(SOFTHSM_MODULE).unwrap();
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = ctx
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim() == hsm.label)
            .expect("token");
        let session = ctx.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&USER_PIN.to_string().into()))
            .unwrap();
        let r = f(&session);
        drop(session);
        ctx.finalize().unwrap();
        r
    }

    /// Destroy every object labelled `label` and let `make` create its
    /// replacement with the same label and CKA_ID.
    pub fn replace_key(hsm: &SoftHsm, label: &str, make: impl FnOnce(&Session, &[u8], &[u8])) {
        with_session(hsm, |s| {
            let found = s
                .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                .unwrap();
            assert!(!found.is_empty(), "no object labelled {label}");
            let id = s
                .get_attributes(found[0], &[cryptoki::object::AttributeType::Id])
                .unwrap()
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Id(id) => Some(id),
                    _ => None,
                })
                .unwrap();
            for h in found {
                s.destroy_object(h).unwrap();
            }
            make(s, label.as_bytes(), &id);
        })
    }
}

/// A custodian's own card (a fresh SoftHSM2 token) with an ec-p256 signing key
/// labelled `sig`, made by `byok-airgap custodian init`; returns the card and
/// the custodian's policy entry.
pub fn custodian_card(name: &str) -> (SoftHsm, serde_json::Value) {
    let card = SoftHsm::new(&format!("card-{name}"));
    let mut a = vec!["custodian".to_string(), "init".into()];
    a.extend(card.hsm_args());
    a.extend(["--name", name, "--key-label", "sig", "--json"].map(String::from));
    let o = run(card.airgap().args(a));
    assert!(o.status.success(), "custodian init: {}", stderr(&o));
    let entry = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["entry"].clone();
    (card, entry)
}

/// `ceremony sign` of `dir` by custodian `name` with the key on `card`.
pub fn sign(card: &SoftHsm, name: &str, dir: &Path) {
    let mut a = vec![
        "ceremony".to_string(),
        "sign".into(),
        dir.to_str().unwrap().into(),
    ];
    a.extend(card.hsm_args());
    a.extend(["--custodian", name, "--key-label", "sig", "--yes"].map(String::from));
    let o = run(card.airgap().args(a));
    assert!(o.status.success(), "ceremony sign: {}", stderr(&o));
}

/// Write a custodian policy of `entries` needing `threshold` signatures.
pub fn write_policy(path: &Path, threshold: usize, entries: &[serde_json::Value]) {
    std::fs::write(
        path,
        serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": threshold, "custodians": entries}).to_string(),
    )
    .unwrap();
}
