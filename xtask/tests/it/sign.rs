//! Signed images on the real kernel, with a throwaway key that openssl
//! makes here: the signature is the one the kernel's own scripts/sign-file
//! writes (built from the kernel source), it verifies, a tampered image
//! does not, and a missing key is an error that names the profile field.
//! The profile extends default-builtin, so each build is a relink at most.

use crate::common::{child_profile, dist_args, root, text, xtask};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use zfcpdump_builder::sign;
use zfcpdump_format::modsig;

/// A profile beside a throwaway key: `[sign]` with the given key value.
fn signed_profile(dir: &Path, key: &str) -> PathBuf {
    sign::throwaway_key(dir).unwrap();
    child_profile(
        dir,
        "signed",
        "default-builtin",
        &format!("[sign]\nkey = \"{key}\"\ncertificate = \"cert.pem\"\n"),
    )
}

fn dist(profile: &Path, out: &Path) -> std::process::Output {
    xtask(&dist_args(profile.to_str().unwrap(), out, &[]))
}

/// The kernel's scripts/sign-file, built on the host from the unpacked
/// kernel source against libcrypto.
fn sign_file(dir: &Path) -> PathBuf {
    let src = fs::read_dir(root().join("target/zfcpdump/kernel/src"))
        .expect("an unpacked kernel source (run cargo xtask dist first)")
        .filter_map(|e| e.ok())
        .flat_map(|e| fs::read_dir(e.path()).into_iter().flatten().flatten())
        .map(|e| e.path().join("scripts/sign-file.c"))
        .find(|p| p.is_file())
        .expect("scripts/sign-file.c in an unpacked kernel source");
    let bin = dir.join("sign-file");
    let st = Command::new("gcc")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .arg("-lcrypto")
        .status()
        .unwrap();
    assert!(st.success(), "cannot build {}", src.display());
    bin
}

#[test]
fn signed_image_is_sign_files_and_verifies() {
    if !test_tier::slow("signs dist builds of the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let profile = signed_profile(d.path(), "key.pem");
    let out = d.path().join("out");
    let o = dist(&profile, &out);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("[sign] signed and verified"), "{t}");
    assert!(!t.contains("not covered by the signature"), "{t}");
    let signed = fs::read(out.join("zfcpdump.image")).unwrap();
    let (body, pkcs7) = modsig::split(&signed).unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let s = &m["sign"];
    assert_eq!(s["hash"], "sha256", "{m}");
    assert_eq!(s["unsigned_sha256"].as_str().unwrap(), sha256(body));
    assert_eq!(s["signed_sha256"].as_str().unwrap(), sha256(&signed));
    assert_eq!(m["artifacts"][0]["sha256"], s["signed_sha256"]);
    assert!(!pkcs7.is_empty());

    // Byte for byte what the kernel's sign-file makes of the same image.
    let unsigned = d.path().join("unsigned");
    fs::write(&unsigned, body).unwrap();
    let st = Command::new(sign_file(d.path()))
        .args(["sha256", "key.pem", "cert.pem"])
        .arg(&unsigned)
        .current_dir(d.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        fs::read(&unsigned).unwrap() == signed,
        "our signed image differs from sign-file's"
    );

    // Verifies; a flipped byte in the image or the signature does not.
    let cert = d.path().join("cert.pem");
    let scratch = d.path().join("scratch");
    sign::verify(&out.join("zfcpdump.image"), &cert, &scratch).unwrap();
    for at in [0x10000, body.len() + 40] {
        let mut bad = signed.clone();
        bad[at] ^= 1;
        let p = d.path().join(format!("tampered-{at:#x}"));
        fs::write(&p, &bad).unwrap();
        let e = format!("{:#}", sign::verify(&p, &cert, &scratch).unwrap_err());
        assert!(e.contains("`openssl cms` failed"), "{e}");
    }
    // Not signed at all: the trailer is named.
    let e = format!(
        "{:#}",
        sign::verify(&unsigned_copy(d.path(), body), &cert, &scratch).unwrap_err()
    );
    assert!(e.contains("no appended signature"), "{e}");
    // Another key's certificate does not verify it.
    let other = d.path().join("other");
    let (_, other_cert) = sign::throwaway_key(&other).unwrap();
    assert!(sign::verify(&out.join("zfcpdump.image"), &other_cert, &scratch).is_err());

    // Signing the same image again with the same key gives the same bytes.
    let again = d.path().join("again");
    let o = dist(&profile, &again);
    assert!(o.status.success(), "{}", text(&o));
    assert!(fs::read(again.join("zfcpdump.image")).unwrap() == signed);
}

fn unsigned_copy(dir: &Path, body: &[u8]) -> PathBuf {
    let p = dir.join("plain-image");
    fs::write(&p, body).unwrap();
    p
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(b))
}

#[test]
fn a_missing_key_names_the_profile_field_and_publishes_nothing() {
    if !test_tier::slow("signs dist builds of the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let profile = signed_profile(d.path(), "missing.pem");
    let out = d.path().join("out");
    let o = dist(&profile, &out);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("sign.key = "), "{t}");
    assert!(t.contains("signed.toml"), "{t}");
    assert!(
        t.contains("missing.pem") && t.contains("does not exist"),
        "{t}"
    );
    assert!(!out.exists());

    // env:VAR: unset is named; set, it signs.
    let profile = signed_profile(d.path(), "env:ZFCPDUMP_TEST_SIGN_KEY");
    let o = dist(&profile, &out);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("the environment variable ZFCPDUMP_TEST_SIGN_KEY is not set"),
        "{t}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["dist", "--no-provision", "--profile"])
        .arg(&profile)
        .arg("--out-dir")
        .arg(&out)
        .env("ZFCPDUMP_TEST_SIGN_KEY", d.path().join("key.pem"))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_signed_profile_with_an_external_initrd_is_warned_about() {
    if !test_tier::slow("signs dist builds of the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let d = tempfile::tempdir().unwrap();
    let profile = signed_profile(d.path(), "key.pem");
    let o = xtask(&[
        "dist",
        "--no-provision",
        "--profile",
        profile.to_str().unwrap(),
        "--set",
        "initramfs.builtin=false",
        "--out-dir",
        d.path().join("out").to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("is not covered by the signature"), "{t}");
    assert!(d.path().join("out/zfcpdump.rd").is_file());
}

/// The key in a softhsm2 token, through openssl's pkcs11 engine: the same
/// bytes as with the key file (RSA signatures are deterministic).
#[test]
fn a_pkcs11_key_in_softhsm_signs_the_same_bytes() {
    if !test_tier::slow("signs dist builds of the real kernel") {
        return;
    }
    let _g = crate::common::stage_cache_lock();
    let module = Path::new("/usr/lib/softhsm/libsofthsm2.so");
    test_tier::require(module.is_file(), "softhsm2 (Debian: softhsm2)");
    let d = tempfile::tempdir().unwrap();
    let tokens = d.path().join("tokens");
    fs::create_dir_all(&tokens).unwrap();
    let conf = d.path().join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let file_profile = signed_profile(d.path(), "key.pem");
    let hsm = |args: &[&str]| {
        let o = Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .current_dir(d.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "softhsm2-util {args:?}: {}", text(&o));
    };
    hsm(&[
        "--init-token",
        "--free",
        "--label",
        "zfcpdump-test",
        "--pin",
        "1234",
        "--so-pin",
        "5678",
    ]);
    let st = Command::new("openssl")
        .args([
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-out", "key.p8",
        ])
        .current_dir(d.path())
        .status()
        .unwrap();
    assert!(st.success());
    hsm(&[
        "--import",
        "key.p8",
        "--token",
        "zfcpdump-test",
        "--label",
        "signkey",
        "--id",
        "01",
        "--pin",
        "1234",
    ]);
    let out_file = d.path().join("file");
    let o = dist(&file_profile, &out_file);
    assert!(o.status.success(), "{}", text(&o));
    // The same directory's key.pem is now also in the token.
    let p11 = d.path().join("p11.toml");
    fs::write(
        &p11,
        fs::read_to_string(&file_profile).unwrap().replace(
            "key = \"key.pem\"",
            "key = \"pkcs11:token=zfcpdump-test;object=signkey;type=private;pin-value=1234\"",
        ),
    )
    .unwrap();
    let out = d.path().join("p11");
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["dist", "--no-provision", "--profile"])
        .arg(&p11)
        .arg("--out-dir")
        .arg(&out)
        .env("SOFTHSM2_CONF", &conf)
        .env("PKCS11_MODULE_PATH", module)
        .current_dir(root())
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("[sign] signed and verified"), "{t}");
    assert!(
        fs::read(out.join("zfcpdump.image")).unwrap()
            == fs::read(out_file.join("zfcpdump.image")).unwrap(),
        "the token's signature differs from the key file's"
    );
}
