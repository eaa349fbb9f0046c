//! The tables of docs/hsm-compatibility.md, asserted: `byok-airgap mechanisms
//! --json` for every KMS key spec × wrapping algorithm on each PKCS#11
//! implementation the tests run (SoftHSM2 2.6.1 from Debian, SoftHSM 2.7.0
//! built by scripts/softhsm27.sh, NSS softoken), compared cell by cell with
//! the table below. Each refusal must give its reason, not only its verdict.
//! (The wraps themselves, unwrapped in software, are in softhsm_wrap.rs,
//! softhsm27_wrap.rs and nss_wrap.rs.)

mod common;

use common::*;

/// Cell codes, algorithms in the order RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256,
/// RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256:
/// * `oaep`: CKM_RSA_PKCS_OAEP; `native`: the token's CKM_RSA_AES_KEY_WRAP;
///   `kwp` / `pad`: ephemeral AES key + CKM_AES_KEY_WRAP_KWP / _PAD + OAEP;
/// * `kms`: KMS does not accept this key spec with this algorithm;
/// * refusals, by reason: `sha1only` (the token's RSA-OAEP is SHA-1 only),
///   `privoaep` (the token will not OAEP-wrap a private key), `zeropad` (the
///   token zero-pads before RFC 5649), `sha1despite` (asked for SHA-256, the
///   token wrapped with SHA-1), `nocurve` (the token has no such curve).
const ALGS: [&str; 4] = [
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
];

const SOFTHSM_2_6_1: &str = "
SYMMETRIC_DEFAULT oaep     sha1only kms     kms
HMAC_224          oaep     sha1only kms     kms
HMAC_256          oaep     sha1only kms     kms
HMAC_384          oaep     sha1only kms     kms
HMAC_512          oaep     sha1only kms     kms
RSA_2048          kms      kms      zeropad sha1only
RSA_3072          kms      kms      zeropad sha1only
RSA_4096          kms      kms      zeropad sha1only
ECC_NIST_P256     privoaep sha1only zeropad sha1only
ECC_NIST_P384     privoaep sha1only pad     sha1only
ECC_NIST_P521     privoaep sha1only zeropad sha1only
ECC_SECG_P256K1   privoaep sha1only pad     sha1only
";

const SOFTHSM_2_7_0: &str = "
SYMMETRIC_DEFAULT oaep     sha1only kms     kms
HMAC_224          oaep     sha1only kms     kms
HMAC_256          oaep     sha1only kms     kms
HMAC_384          oaep     sha1only kms     kms
HMAC_512          oaep     sha1only kms     kms
RSA_2048          kms      kms      native  sha1despite
RSA_3072          kms      kms      native  sha1despite
RSA_4096          kms      kms      native  sha1despite
ECC_NIST_P256     privoaep sha1only native  sha1despite
ECC_NIST_P384     privoaep sha1only native  sha1despite
ECC_NIST_P521     privoaep sha1only native  sha1despite
ECC_SECG_P256K1   privoaep sha1only native  sha1despite
";

const NSS_SOFTOKEN: &str = "
SYMMETRIC_DEFAULT oaep     oaep     kms     kms
HMAC_224          oaep     oaep     kms     kms
HMAC_256          oaep     oaep     kms     kms
HMAC_384          oaep     oaep     kms     kms
HMAC_512          oaep     oaep     kms     kms
RSA_2048          kms      kms      kwp     kwp
RSA_3072          kms      kms      kwp     kwp
RSA_4096          kms      kms      kwp     kwp
ECC_NIST_P256     oaep     oaep     kwp     kwp
ECC_NIST_P384     oaep     oaep     kwp     kwp
ECC_NIST_P521     oaep     oaep     kwp     kwp
ECC_SECG_P256K1   nocurve  nocurve  nocurve nocurve
";

/// What the detail of a refusal must contain for each reason code.
fn needle(code: &str) -> &'static str {
    match code {
        "sha1only" => "does not do RSA-OAEP with SHA-256 (SoftHSM2 does SHA-1 only)",
        "privoaep" => "will not RSA-OAEP-wrap this EC private key",
        "zeropad" => "the token pads wrapped keys",
        "sha1despite" => {
            "the token wrapped the AES key with RSA-OAEP SHA-1 despite being asked for SHA-256"
        }
        "nocurve" => "cannot hold a ECC_SECG_P256K1 key",
        other => panic!("unknown refusal code {other}"),
    }
}

/// The code of one row of a `mechanisms --json` report.
fn code(row: &serde_json::Value) -> String {
    match row["result"].as_str().unwrap() {
        "kms-forbids" => "kms".into(),
        "pass" => {
            let m = &row["method"];
            let hash = if row["wrapping_algorithm"]
                .as_str()
                .unwrap()
                .ends_with("SHA_1")
            {
                "SHA_1"
            } else {
                "SHA_256"
            };
            assert_eq!(m["hash"], hash, "{row}");
            match m["method"].as_str().unwrap() {
                "oaep" => "oaep".into(),
                "native_rsa_aes" => "native".into(),
                "two_step_rsa_aes" => match m["aes_wrap"].as_str().unwrap() {
                    "CKM_AES_KEY_WRAP_KWP" => "kwp".into(),
                    "CKM_AES_KEY_WRAP_PAD" => "pad".into(),
                    other => panic!("unknown AES wrap {other}"),
                },
                other => panic!("unknown method {other}"),
            }
        }
        "unsupported" => "unsupported".into(),
        other => panic!("unknown result {other}"),
    }
}

fn assert_matrix(t: &impl TestToken, table: &str, listed: [bool; 4]) {
    let mut args = vec!["mechanisms".to_string()];
    args.extend(t.selection());
    args.push("--json".into());
    let o = run(t.command().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["format"], "byok-ceremony/mechanisms/v1");
    let names = [
        "CKM_RSA_PKCS_OAEP (0x9)",
        "CKM_RSA_AES_KEY_WRAP (0x1054)",
        "CKM_AES_KEY_WRAP_KWP (0x210b)",
        "CKM_AES_KEY_WRAP_PAD (0x210a)",
    ];
    let want: Vec<serde_json::Value> = names
        .iter()
        .zip(listed)
        .map(|(n, l)| serde_json::json!([n, l]))
        .collect();
    assert_eq!(r["mechanisms"], serde_json::Value::Array(want));
    let rows = r["rows"].as_array().unwrap();
    let mut mismatches = Vec::new();
    let mut cells = 0;
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        let mut cols = line.split_whitespace();
        let spec = cols.next().unwrap();
        for (alg, want) in ALGS.iter().zip(cols) {
            cells += 1;
            let row = rows
                .iter()
                .find(|x| x["key_spec"] == spec && x["wrapping_algorithm"] == *alg)
                .unwrap_or_else(|| panic!("no row {spec} {alg}"));
            let got = code(row);
            let ok = match want {
                "oaep" | "native" | "kwp" | "pad" | "kms" => got == want,
                reason => {
                    got == "unsupported" && row["detail"].as_str().unwrap().contains(needle(reason))
                }
            };
            if !ok {
                mismatches.push(format!(
                    "{spec} {alg}: want {want}, got {got}: {}",
                    row["detail"]
                ));
            }
        }
    }
    assert_eq!(cells, rows.len(), "the table covers every row");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn softhsm_2_6_1_matrix() {
    assert_matrix(
        &SoftHsm::new("matrix26"),
        SOFTHSM_2_6_1,
        [true, false, false, true],
    );
}

#[test]
fn softhsm_2_7_0_matrix() {
    assert_matrix(
        &SoftHsm::v27("matrix27"),
        SOFTHSM_2_7_0,
        [true, true, false, true],
    );
}

#[test]
fn nss_softoken_matrix() {
    assert_matrix(&NssDb::new(), NSS_SOFTOKEN, [true, false, true, true]);
}
