//! The kernel's appended signature ("module signature" format), which zipl
//! 2.42 and later require of a dump tool's image for secure IPL:
//!
//! `image ‖ PKCS#7 (CMS SignedData, DER, detached) ‖ struct module_signature ‖ MAGIC`
//!
//! `struct module_signature` (include/linux/module_signature.h) is 12 bytes:
//! `algo`, `hash`, `id_type`, `signer_len`, `key_id_len` (one byte each),
//! three bytes of padding and the signature's length as a big-endian u32.
//! For PKCS#7 every byte but `id_type` (2) and the length is zero; the
//! signer and the algorithms are inside the PKCS#7 blob. This is what the
//! kernel's scripts/sign-file writes.

use std::fmt;

/// The trailer's last bytes.
pub const MAGIC: &[u8] = b"~Module signature appended~\n";
/// `PKEY_ID_PKCS7`.
pub const ID_PKCS7: u8 = 2;
/// Size of `struct module_signature`.
pub const INFO_SIZE: usize = 12;

/// Why a signed image does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModsigError {
    /// The image does not end with [`MAGIC`].
    NoMagic,
    /// `struct module_signature` is not the PKCS#7 form.
    NotPkcs7 {
        /// The 12 bytes as found.
        info: [u8; INFO_SIZE],
    },
    /// The signature's length is zero or runs past the start of the image.
    BadLength {
        /// The length the trailer gives.
        sig_len: u32,
        /// The bytes before the trailer.
        available: usize,
    },
}

impl fmt::Display for ModsigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModsigError::NoMagic => write!(
                f,
                "no appended signature: the image does not end with {:?}",
                String::from_utf8_lossy(MAGIC).trim_end()
            ),
            ModsigError::NotPkcs7 { info } => write!(
                f,
                "the signature trailer is not the PKCS#7 form (id_type {}, expected {ID_PKCS7}; \
                 other fields must be zero): {info:02x?}",
                info[2]
            ),
            ModsigError::BadLength { sig_len, available } => write!(
                f,
                "the signature trailer gives a length of {sig_len} bytes, \
                 but {available} bytes precede it"
            ),
        }
    }
}

impl std::error::Error for ModsigError {}

/// `image` with `pkcs7` (DER) appended in the kernel's format.
pub fn append(image: &[u8], pkcs7: &[u8]) -> Vec<u8> {
    let len = u32::try_from(pkcs7.len()).expect("a signature below 4 GiB");
    let mut out = Vec::with_capacity(image.len() + pkcs7.len() + INFO_SIZE + MAGIC.len());
    out.extend_from_slice(image);
    out.extend_from_slice(pkcs7);
    let mut info = [0u8; INFO_SIZE];
    info[2] = ID_PKCS7;
    info[8..].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&info);
    out.extend_from_slice(MAGIC);
    out
}

/// Bytes a trailer needs at the end of a file to be recognised.
pub const TAIL_SIZE: usize = INFO_SIZE + MAGIC.len();

/// From a file's last [`TAIL_SIZE`] bytes: how many bytes of signature and
/// trailer end it (None when it carries no PKCS#7 appended signature).
/// zipl places only the bytes before them as the kernel image component.
pub fn appended_len(tail: &[u8]) -> Option<u64> {
    let info = tail.strip_suffix(MAGIC)?;
    let info: [u8; INFO_SIZE] = info.try_into().ok()?;
    (info[..8] == [0, 0, ID_PKCS7, 0, 0, 0, 0, 0]).then(|| {
        u64::from(u32::from_be_bytes(info[8..].try_into().expect("4 bytes"))) + TAIL_SIZE as u64
    })
}

/// A signed image split into the signed bytes and the PKCS#7 blob.
pub fn split(signed: &[u8]) -> Result<(&[u8], &[u8]), ModsigError> {
    let body = signed.strip_suffix(MAGIC).ok_or(ModsigError::NoMagic)?;
    let at = body
        .len()
        .checked_sub(INFO_SIZE)
        .ok_or(ModsigError::NoMagic)?;
    let info: [u8; INFO_SIZE] = body[at..].try_into().expect("12 bytes");
    let pkcs7_form = info[..8] == [0, 0, ID_PKCS7, 0, 0, 0, 0, 0];
    if !pkcs7_form {
        return Err(ModsigError::NotPkcs7 { info });
    }
    let sig_len = u32::from_be_bytes(info[8..].try_into().expect("4 bytes"));
    let rest = &body[..at];
    let start = rest
        .len()
        .checked_sub(sig_len as usize)
        .filter(|_| sig_len > 0)
        .ok_or(ModsigError::BadLength {
            sig_len,
            available: rest.len(),
        })?;
    Ok((&rest[..start], &rest[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_then_split_round_trips() {
        let signed = append(b"IMAGE", b"SIG");
        assert!(signed.ends_with(MAGIC));
        assert_eq!(signed.len(), 5 + 3 + INFO_SIZE + MAGIC.len());
        // The trailer as sign-file writes it: id_type 2, length big-endian.
        assert_eq!(
            &signed[8..8 + INFO_SIZE],
            &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 3]
        );
        assert_eq!(split(&signed), Ok((&b"IMAGE"[..], &b"SIG"[..])));
        assert_eq!(
            appended_len(&signed[signed.len() - TAIL_SIZE..]),
            Some(3 + TAIL_SIZE as u64)
        );
        assert_eq!(appended_len(&[0u8; TAIL_SIZE]), None);
    }

    #[test]
    fn malformed_trailers_are_refused() {
        assert_eq!(split(b"IMAGE"), Err(ModsigError::NoMagic));
        let mut s = append(b"IMAGE", b"SIG");
        let n = s.len();
        s[n - MAGIC.len() - INFO_SIZE + 2] = 1; // id_type X509
        assert!(matches!(split(&s), Err(ModsigError::NotPkcs7 { .. })));
        let mut s = append(b"IMAGE", b"SIG");
        let n = s.len();
        s[n - MAGIC.len() - 1] = 200; // longer than what precedes it
        assert!(matches!(
            split(&s),
            Err(ModsigError::BadLength { sig_len: 200, .. })
        ));
        assert!(split(MAGIC).is_err());
    }
}
