//! The reporter's receipt: 16 random digits, written like a phone number so that it looks
//! harmless in a contact list (DESIGN §3, "Reporter follow-up").

use std::fmt::Write as _;

use age::secrecy::{ExposeSecret, SecretString};
use rand::{Rng, rngs::OsRng};
use zeroize::Zeroizing;

/// Number of digits in a receipt: 10^16 ≈ 2^53 possibilities, each guess costing one argon2id run.
pub const RECEIPT_DIGITS: usize = 16;
/// How many receipts there are: 10^[`RECEIPT_DIGITS`].
const RECEIPT_SPACE: u64 = 10_u64.pow(RECEIPT_DIGITS as u32);

/// A receipt code. Never `Debug`, `Clone` or `Display`: it is the only key to a reporter's case.
pub struct ReceiptCode(SecretString);

/// The input is not a receipt code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a receipt is 16 digits, like 1234-5678-9012-3456")]
pub struct InvalidReceipt;

impl ReceiptCode {
    /// A fresh receipt with uniformly random digits from the operating system's CSPRNG: one
    /// number drawn uniformly below 10^16 (one system call, rarely two: `gen_range` rejects the
    /// few draws that would bias it), written with its leading zeros.
    pub fn generate() -> Self {
        let number = Zeroizing::new(OsRng.gen_range(0..RECEIPT_SPACE));
        let mut digits = Zeroizing::new(String::with_capacity(RECEIPT_DIGITS));
        // Writing into a String cannot fail; the capacity is exact, so no copy is left behind.
        let _ = write!(digits, "{:0width$}", *number, width = RECEIPT_DIGITS);
        Self(SecretString::from(digits.as_str()))
    }

    /// Parses a receipt as typed: 16 digits, with any spaces, hyphens or dots between them.
    pub fn parse(input: &str) -> Result<Self, InvalidReceipt> {
        let mut digits = Zeroizing::new(String::with_capacity(RECEIPT_DIGITS));
        for character in input.chars() {
            match character {
                // A 17th digit would make the String grow, leaving the first 16 in a freed,
                // unwiped buffer: refuse before it.
                '0'..='9' if digits.len() == RECEIPT_DIGITS => return Err(InvalidReceipt),
                '0'..='9' => digits.push(character),
                ' ' | '-' | '.' => {}
                _ => return Err(InvalidReceipt),
            }
        }
        if digits.len() != RECEIPT_DIGITS {
            return Err(InvalidReceipt);
        }
        Ok(Self(SecretString::from(digits.as_str())))
    }

    /// The bare digits: the input of the receipt KDF.
    pub fn digits(&self) -> &str {
        self.0.expose_secret()
    }

    /// The shown form, `1234-5678-9012-3456`.
    pub fn formatted(&self) -> SecretString {
        let digits = self.0.expose_secret();
        let grouped: Zeroizing<String> = Zeroizing::new(
            digits
                .as_bytes()
                .chunks(4)
                .map(|group| std::str::from_utf8(group).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("-"),
        );
        SecretString::from(grouped.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_generated_receipt_is_sixteen_digits_in_four_groups() {
        let receipt = ReceiptCode::generate();
        let shown = receipt.formatted();
        let shown = shown.expose_secret();
        assert_eq!(shown.len(), 19);
        assert!(
            shown
                .split('-')
                .all(|group| group.len() == 4 && group.bytes().all(|byte| byte.is_ascii_digit()))
        );
    }

    #[test]
    fn spaces_dots_and_hyphens_are_ignored_when_parsing() {
        let receipt = ReceiptCode::parse("1234 5678.9012-3456").unwrap();
        assert_eq!(receipt.digits(), "1234567890123456");
        assert_eq!(receipt.formatted().expose_secret(), "1234-5678-9012-3456");
    }

    #[test]
    fn wrong_lengths_and_letters_are_refused() {
        assert!(ReceiptCode::parse("1234-5678-9012-345").is_err());
        assert!(ReceiptCode::parse("1234-5678-9012-34567").is_err());
        assert!(ReceiptCode::parse("1234-5678-9012-345a").is_err());
        assert!(ReceiptCode::parse("").is_err());
    }

    #[test]
    fn every_digit_is_drawn_about_equally_often_at_every_position() {
        // 10 digits × 16 positions, 20,000 receipts: each count is binomial with mean 2,000 and
        // standard deviation ~42, so the bounds sit ~7 deviations out. A grossly biased draw (a
        // number that lost its leading zeros or high digits, a range cut short) lands far
        // outside them; a subtle one (a modulo of 2^64, ~1 in 1,844) would not, which is why the
        // draw is `gen_range`'s.
        const RECEIPTS: usize = 20_000;
        let mut counts = [[0u32; 10]; RECEIPT_DIGITS];
        for _ in 0..RECEIPTS {
            let receipt = ReceiptCode::generate();
            assert_eq!(receipt.digits().len(), RECEIPT_DIGITS);
            for (position, digit) in receipt.digits().bytes().enumerate() {
                counts[position][usize::from(digit - b'0')] += 1;
            }
        }
        for (position, row) in counts.iter().enumerate() {
            for (digit, count) in row.iter().enumerate() {
                assert!(
                    (1_700..=2_300).contains(count),
                    "digit {digit} at position {position} drawn {count} times of {RECEIPTS}"
                );
            }
        }
    }

    #[test]
    fn two_receipts_differ() {
        assert_ne!(
            ReceiptCode::generate().digits(),
            ReceiptCode::generate().digits()
        );
    }

    proptest! {
        #[test]
        fn the_shown_form_parses_back_to_the_same_digits(digits in "[0-9]{16}") {
            let receipt = ReceiptCode::parse(&digits).unwrap();
            let again = ReceiptCode::parse(receipt.formatted().expose_secret()).unwrap();
            prop_assert_eq!(again.digits(), digits.as_str());
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(input in "\\PC{0,40}") {
            let _ = ReceiptCode::parse(&input);
        }
    }
}
