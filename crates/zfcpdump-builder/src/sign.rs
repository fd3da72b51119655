//! The sign step: `zfcpdump.image` with the kernel's appended PKCS#7
//! signature (`zfcpdump_format::modsig`), which zipl 2.42 and later require
//! of a dump tool for secure IPL.
//!
//! openssl writes the signature, with the options that make it what the
//! kernel's scripts/sign-file writes (CMS SignedData, detached, no signed
//! attributes, no certificates, issuer and serial as signer id): sign-file
//! itself is built only with `CONFIG_MODULE_SIG_FORMAT`, which
//! zfcpdump_defconfig lacks. xtask/tests/it/sign.rs checks the bytes against a
//! sign-file built from the kernel source. The signed image is verified
//! against the certificate before anything is published.
//!
//! With RSA keys (PKCS#1 v1.5) and no signed attributes, signing the same
//! image with the same key gives the same bytes; ECDSA signatures are
//! randomised and do not.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use zfcpdump_format::modsig;

use crate::cmd::{self, cmd};
use crate::profile::{Profile, Sign};
use crate::util;

/// What the manifest records of a signature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignRecord {
    /// The signed image (in the build's cache).
    #[serde(skip)]
    pub image: PathBuf,
    pub hash: String,
    /// sha256 of the certificate's DER: its fingerprint.
    pub certificate_sha256: String,
    pub certificate_subject: String,
    pub unsigned_sha256: String,
    pub signed_sha256: String,
    pub signed_size: u64,
}

/// Where the key comes from, resolved.
enum Key {
    File(PathBuf),
    Pkcs11(String),
}

/// A file named by a `[sign]` field: a path, or `env:VAR` naming one.
fn resolve_file(
    profile: &Profile,
    field: &str,
    value: &str,
    what: &str,
    hint: &str,
) -> Result<PathBuf> {
    let err = |why: String| {
        anyhow::anyhow!(
            "{}: sign.{field} = {value:?}: {why}",
            profile.origin(&format!("sign.{field}"))
        )
    };
    let path = match value.strip_prefix("env:") {
        Some(var) => match std::env::var_os(var) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => {
                return Err(err(format!(
                    "the environment variable {var} is not set; set it to the {what}'s path"
                )));
            }
        },
        None => PathBuf::from(value),
    };
    if !path.is_file() {
        return Err(err(format!(
            "the {what} {} does not exist{hint}",
            path.display()
        )));
    }
    Ok(path)
}

fn resolve_key(profile: &Profile, sign: &Sign) -> Result<Key> {
    if sign.key.starts_with("pkcs11:") {
        return Ok(Key::Pkcs11(sign.key.clone()));
    }
    resolve_file(
        profile,
        "key",
        &sign.key,
        "key file",
        " (a PEM private key; or name it with env:VAR, or give a pkcs11: URI)",
    )
    .map(Key::File)
}

/// openssl's stdout. Errors name the subcommand, not the whole line: a
/// PKCS#11 URI may hold the token's PIN.
fn openssl<S: AsRef<OsStr>>(args: &[S], what: &str) -> Result<Vec<u8>> {
    let sh = cmd::shell()?;
    let sub = args.first().map(|a| a.as_ref().to_string_lossy());
    let shown = format!("openssl {}", sub.unwrap_or_default());
    let out = cmd::output_shown_as(cmd!(sh, "openssl {args...}"), &shown)
        .with_context(|| format!("{what} (openssl; Debian: openssl)"))?;
    Ok(out.stdout)
}

/// The key and certificate files of the profile's `[sign]`, resolved
/// (`env:` variables set, files present) without signing anything: the
/// preflight's check. A `pkcs11:` key is only used when signing.
pub fn check_files(profile: &Profile) -> Result<String> {
    let Some(sign) = &profile.sign else {
        return Ok("no [sign]".into());
    };
    let key = match resolve_key(profile, sign)? {
        Key::File(p) => p.display().to_string(),
        Key::Pkcs11(_) => "a pkcs11: token".into(),
    };
    let cert = resolve_certificate(profile, sign)?;
    Ok(format!("key {key}, certificate {}", cert.display()))
}

fn resolve_certificate(profile: &Profile, sign: &Sign) -> Result<PathBuf> {
    resolve_file(
        profile,
        "certificate",
        &sign.certificate,
        "certificate",
        " (X.509, PEM or DER)",
    )
}

/// Signs `image` into `<cache>/sign/<profile>/zfcpdump.image` and verifies
/// it; the unsigned image is left as it is.
pub fn sign(root: &Path, profile: &Profile, image: &Path) -> Result<SignRecord> {
    let sign = profile.sign.as_ref().context("the profile has no [sign]")?;
    let t = std::time::Instant::now();
    let key = resolve_key(profile, sign)?;
    let cert = &resolve_certificate(profile, sign)?;
    // One directory per unsigned image: a variant signed in the same run
    // (e2e's elided build) does not replace another's.
    let unsigned_sha = util::sha256_file(image)?;
    let dir = util::cache_dir(root)
        .join("sign")
        .join(&profile.name)
        .join(&unsigned_sha[..16]);
    fs::create_dir_all(&dir)?;
    let sig = dir.join("signature.der");
    let _ = fs::remove_file(&sig);
    let hash = sign.hash.to_string();
    cms_sign(image, &sig, cert, &key, &hash)?;
    let unsigned = fs::read(image)?;
    let signed = modsig::append(&unsigned, &fs::read(&sig)?);
    let out = dir.join("zfcpdump.image");
    util::write_atomic(&out, &signed)?;
    verify(&out, cert, &dir).with_context(|| {
        format!(
            "the image just signed does not verify against {}",
            cert.display()
        )
    })?;
    let (certificate_sha256, certificate_subject) = certificate_id(cert)?;
    let rec = SignRecord {
        image: out,
        hash,
        certificate_sha256,
        certificate_subject,
        unsigned_sha256: util::sha256_bytes(&unsigned),
        signed_sha256: util::sha256_bytes(&signed),
        signed_size: signed.len() as u64,
    };
    eprintln!(
        "[sign] signed and verified in {}: {} ({} bytes of signature, {}, certificate {} sha256 {})",
        util::fmt_duration(t.elapsed()),
        rec.image.display(),
        signed.len() - unsigned.len(),
        rec.hash,
        rec.certificate_subject,
        &rec.certificate_sha256[..16]
    );
    Ok(rec)
}

/// openssl's CMS signature of `image` into `sig` (DER), as sign-file makes
/// it: detached, no signed attributes, no certificates.
fn cms_sign(image: &Path, sig: &Path, cert: &Path, key: &Key, hash: &str) -> Result<()> {
    let mut args: Vec<OsString> = [
        "cms",
        "-sign",
        "-binary",
        "-noattr",
        "-nocerts",
        "-nosmimecap",
        "-outform",
        "DER",
        "-md",
        hash,
        "-in",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(image.into());
    args.push("-out".into());
    args.push(sig.into());
    args.push("-signer".into());
    args.push(cert.into());
    match key {
        Key::File(p) => {
            args.push("-inkey".into());
            args.push(p.into());
        }
        Key::Pkcs11(uri) => {
            for a in ["-engine", "pkcs11", "-keyform", "engine", "-inkey", uri] {
                args.push(a.into());
            }
        }
    }
    openssl(&args, &format!("signing {}", image.display())).map(drop)
}

/// The certificate's fingerprint (sha256 of its DER) and subject.
fn certificate_id(cert: &Path) -> Result<(String, String)> {
    let x509 = |extra: &[&str]| {
        let mut a: Vec<OsString> = vec!["x509".into(), "-in".into(), cert.into()];
        a.extend(extra.iter().map(OsString::from));
        openssl(&a, "reading the certificate")
    };
    let der = x509(&["-outform", "DER"])?;
    let subject = x509(&["-noout", "-subject"])?;
    let subject = String::from_utf8_lossy(&subject)
        .trim()
        .trim_start_matches("subject=")
        .trim()
        .to_string();
    Ok((util::sha256_bytes(&der), subject))
}

/// Checks an image's appended signature against `cert`: the trailer's
/// form, then the PKCS#7 signature over the bytes before it (openssl; the
/// certificate's chain is not checked, only that its key made the
/// signature). `scratch` holds the split parts.
pub fn verify(signed: &Path, cert: &Path, scratch: &Path) -> Result<()> {
    let data = fs::read(signed).with_context(|| format!("cannot read {}", signed.display()))?;
    let (body, pkcs7) = modsig::split(&data).with_context(|| format!("{}", signed.display()))?;
    fs::create_dir_all(scratch)?;
    let (b, s) = (scratch.join("verify.body"), scratch.join("verify.p7s"));
    fs::write(&b, body)?;
    fs::write(&s, pkcs7)?;
    let res = openssl(
        &[
            OsStr::new("cms"),
            OsStr::new("-verify"),
            OsStr::new("-binary"),
            OsStr::new("-inform"),
            OsStr::new("DER"),
            OsStr::new("-in"),
            s.as_os_str(),
            OsStr::new("-content"),
            b.as_os_str(),
            OsStr::new("-certfile"),
            cert.as_os_str(),
            OsStr::new("-nointern"),
            OsStr::new("-noverify"),
            OsStr::new("-out"),
            OsStr::new("/dev/null"),
        ],
        &format!("verifying {}", signed.display()),
    );
    let _ = fs::remove_file(&b);
    let _ = fs::remove_file(&s);
    res.map(drop)
}

/// A throwaway RSA key and self-signed certificate in `dir` (key.pem,
/// cert.pem), for tests and CI: never a key to sign a release with.
pub fn throwaway_key(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    fs::create_dir_all(dir)?;
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let mut a: Vec<OsString> = [
        "req",
        "-new",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=zfcpdump throwaway test signing key/",
        "-keyout",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    a.push(key.clone().into());
    a.push("-out".into());
    a.push(cert.clone().into());
    openssl(&a, "making a throwaway signing key")?;
    Ok((key, cert))
}
