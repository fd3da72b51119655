//! The dump superblock checksum.
//!
//! zipl, zfcpdump and zgetdump use the s390 CKSM instruction: a 32-bit one's-complement
//! sum with end-around carry over the big-endian 32-bit words of the data. zipl
//! seeds it with [`CSUM_SEED`] because the sum over an all-zero block would
//! otherwise be 0. This is a portable reimplementation with the same result on
//! any host.

/// Seed used by zipl and zgetdump.
pub const CSUM_SEED: u32 = 0x1234_5678;
/// Number of bytes the superblock checksum covers (zipl always writes 4096).
pub const CSUM_SIZE: usize = 4096;

/// CKSM: adds the big-endian 32-bit words of `data` to `seed`, folding every carry
/// out of bit 31 back into bit 0. A trailing partial word is padded with zero bytes
/// on the right, as the instruction does.
pub fn cksm(seed: u32, data: &[u8]) -> u32 {
    let mut sum = seed;
    let mut chunks = data.chunks_exact(4);
    for w in &mut chunks {
        sum = add_end_around(sum, u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 4];
        w[..rest.len()].copy_from_slice(rest);
        sum = add_end_around(sum, u32::from_be_bytes(w));
    }
    sum
}

/// The superblock checksum of a block: [`cksm`] seeded with [`CSUM_SEED`].
pub fn dump_csum(block: &[u8]) -> u32 {
    cksm(CSUM_SEED, block)
}

fn add_end_around(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(carry as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_block_sums_to_seed() {
        // zipl zeroes the first 64 KiB of the partition, so a fresh disk's csum is the seed.
        assert_eq!(dump_csum(&[0u8; CSUM_SIZE]), 0x1234_5678);
    }

    #[test]
    fn words_are_big_endian() {
        assert_eq!(cksm(0, &[0, 0, 0, 1]), 1);
        assert_eq!(cksm(0, &[1, 0, 0, 0]), 0x0100_0000);
        assert_eq!(cksm(0, &[0x12, 0x34, 0x56, 0x78, 0, 0, 0, 2]), 0x1234_567a);
    }

    #[test]
    fn carry_wraps_around() {
        assert_eq!(cksm(0xffff_ffff, &[0, 0, 0, 1]), 1);
        assert_eq!(cksm(0x8000_0000, &[0x80, 0, 0, 0]), 1);
        assert_eq!(cksm(0xffff_fffe, &[0, 0, 0, 1]), 0xffff_ffff);
        // 0xffffffff is "negative zero": adding it leaves a non-zero sum unchanged.
        assert_eq!(dump_csum(&[0xff; CSUM_SIZE]), 0x1234_5678);
        // Two carries in a row.
        assert_eq!(
            cksm(
                0xffff_ffff,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
            ),
            0xffff_ffff
        );
    }

    #[test]
    fn busy_marker_changes_the_sum() {
        let mut block = [0u8; CSUM_SIZE];
        block[..14].copy_from_slice(b"zfcpdump busy\0");
        // "zfcp" + "dump" + " bus" + "y\0\0\0" + seed, computed by hand with carries.
        let words: [u32; 4] = [0x7a66_6370, 0x6475_6d70, 0x2062_7573, 0x7900_0000];
        let mut expect: u64 = 0x1234_5678;
        for w in words {
            expect += w as u64;
            expect = (expect & 0xffff_ffff) + (expect >> 32);
        }
        assert_eq!(dump_csum(&block) as u64, expect);
        assert_ne!(dump_csum(&block), CSUM_SEED);
    }

    #[test]
    fn partial_word_is_right_padded() {
        assert_eq!(cksm(0, &[1, 2, 3]), 0x0102_0300);
        assert_eq!(cksm(0, &[]), 0);
    }
}
