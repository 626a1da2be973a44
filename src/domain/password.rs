//! Passwords as NIST SP 800-63B §3.1.1 wants them: NFKC-normalized, 12–256
//! characters (code points, spaces and every Unicode character allowed), and not
//! a commonly used, repetitive, sequential or context-derived value.
//!
//! `Password` holds the secret in a `SecretString`: it is never printed by `Debug`.

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 256;

/// The shipped list of commonly used passwords (one per line, lower-case), plus
/// base words that attackers try with a few digits or symbols appended.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");
const COMMON_BASE_WORDS: &str = include_str!("common-base-words.txt");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error("Use at least {MIN_LENGTH} characters.")]
    TooShort,
    #[error("Use at most {MAX_LENGTH} characters.")]
    TooLong,
    #[error("This password is too common. Choose something harder to guess, such as a few unrelated words.")]
    Common,
    #[error("This password is a repeated or sequential pattern. Choose something harder to guess.")]
    Pattern,
    #[error("Do not use your username, e-mail address or the service name in your password.")]
    Contextual,
    #[error("You used this password recently. Choose one you have not used before.")]
    Reused,
}

/// A password offered by a person, not yet checked against the policy.
#[derive(Clone)]
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    /// Wraps a password as typed, normalized to NFKC so the same password typed
    /// on different keyboards hashes the same.
    pub fn new(raw: &str) -> Self {
        Self(SecretString::from(raw.nfkc().collect::<String>()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Checks a new password against the policy. `context` holds words specific
    /// to this account (username, e-mail) that must not make up the password.
    pub fn check_policy(&self, context: &[&str]) -> Result<(), PasswordPolicyError> {
        let password = self.expose();
        let len = password.chars().count();
        if len < MIN_LENGTH {
            return Err(PasswordPolicyError::TooShort);
        }
        if len > MAX_LENGTH {
            return Err(PasswordPolicyError::TooLong);
        }
        let lower = password.to_lowercase();
        if is_common(&lower) {
            return Err(PasswordPolicyError::Common);
        }
        if is_pattern(&lower) {
            return Err(PasswordPolicyError::Pattern);
        }
        let folded = fold_leet(&lower);
        for word in context.iter().chain(["oxidp"].iter()) {
            let word = word.to_lowercase();
            let word = word.split('@').next().unwrap_or_default();
            if word.chars().count() >= 3 && (lower.contains(word) || folded.contains(word)) {
                // The account name inside a longer passphrase is fine; the account
                // name with a few extra characters is not.
                let rest = len - word.chars().count();
                if rest < 10 {
                    return Err(PasswordPolicyError::Contextual);
                }
            }
        }
        Ok(())
    }
}

fn is_common(lower: &str) -> bool {
    if COMMON_PASSWORDS.lines().any(|line| line == lower) {
        return true;
    }
    // A common word dressed up with leetspeak and a short run of digits or
    // symbols ("P@ssw0rd2024!", "dragon123456") is as guessable as the word.
    // Strip the decoration first, then undo the substitutions inside the word.
    let core = lower.trim_end_matches(|c: char| !c.is_alphabetic());
    let core = core.trim_start_matches(|c: char| !c.is_alphabetic());
    if core.is_empty() {
        return false;
    }
    let decoration = lower.chars().count() - core.chars().count();
    let core = fold_leet(core);
    decoration <= 8
        && COMMON_BASE_WORDS
            .lines()
            .any(|word| !word.is_empty() && (core == word || is_repetition_of(&core, word)))
}

/// "passwordpassword", "abcabcabcabc": the same short unit over and over.
fn is_repetition_of(text: &str, unit: &str) -> bool {
    !unit.is_empty()
        && text.len().is_multiple_of(unit.len())
        && text.len() > unit.len()
        && text == unit.repeat(text.len() / unit.len())
}

/// A single character repeated, a short unit repeated, or a run along the
/// alphabet, the digits or a keyboard row.
fn is_pattern(lower: &str) -> bool {
    let chars: Vec<char> = lower.chars().collect();
    // Repetition of a unit of up to 4 characters covers "aaaaaaaaaaaa", "abababababab", "abc!abc!abc!".
    for unit in 1..=4 {
        if chars.len() >= unit * 3 && chars.iter().enumerate().all(|(i, c)| *c == chars[i % unit]) {
            return true;
        }
    }
    const SEQUENCES: [&str; 7] = [
        "abcdefghijklmnopqrstuvwxyz",
        "01234567890123456789",
        "qwertyuiopasdfghjklzxcvbnm",
        "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
        "zaq12wsxcde34rfvbgt56yhnmju78ik,.lo90p",
        "q1w2e3r4t5y6u7i8o9p0",
        "1q2w3e4r5t6y7u8i9o0p",
    ];
    for sequence in SEQUENCES {
        let reversed: String = sequence.chars().rev().collect();
        if sequence.contains(lower) || reversed.contains(lower) {
            return true;
        }
    }
    // Mostly one long ascending/descending run ("123456789012!").
    let mut longest = 1;
    let mut run = 1;
    for pair in chars.windows(2) {
        let step = pair[1] as i64 - pair[0] as i64;
        if step == 1 || step == -1 || (pair[0] == '9' && pair[1] == '0') {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 1;
        }
    }
    longest * 4 >= chars.len() * 3
}

/// Undoes the usual letter substitutions so "p@55w0rd" compares as "password".
fn fold_leet(lower: &str) -> String {
    lower
        .chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '0' => 'o',
            '1' | '!' | '|' => 'i',
            '3' => 'e',
            '$' | '5' => 's',
            '7' | '+' => 't',
            '8' => 'b',
            '9' => 'g',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: &str) -> Result<(), PasswordPolicyError> {
        Password::new(p).check_policy(&["alice", "alice@example.com"])
    }

    #[test]
    fn length_bounds_count_code_points() {
        assert_eq!(check("short-pass1"), Err(PasswordPolicyError::TooShort));
        assert_eq!(
            check(&"x".repeat(257)),
            Err(PasswordPolicyError::Pattern).or(Err(PasswordPolicyError::TooLong))
        );
        assert_eq!(check(&"a7Zq".repeat(65)), Err(PasswordPolicyError::TooLong));
        // 12 code points, 36 bytes: long enough.
        assert_eq!(check("日本語のパスワード正しい"), Ok(()));
    }

    #[test]
    fn refuses_common_and_dressed_up_common() {
        for p in [
            "password1234",
            "Password123!",
            "P@ssw0rd2024!",
            "qwerty123456",
            "iloveyou2025",
            "dragon123456",
            "passwordpassword",
        ] {
            assert_eq!(check(p), Err(PasswordPolicyError::Common), "{p}");
        }
    }

    #[test]
    fn refuses_patterns() {
        for p in [
            "aaaaaaaaaaaa",
            "abababababab",
            "123456789012",
            "abcdefghijklm",
            "qwertyuiopasd",
            "1q2w3e4r5t6y",
            "987654321098",
        ] {
            assert!(
                matches!(
                    check(p),
                    Err(PasswordPolicyError::Pattern | PasswordPolicyError::Common)
                ),
                "{p}"
            );
        }
    }

    #[test]
    fn refuses_context_words() {
        assert_eq!(check("alice-2024-xy"), Err(PasswordPolicyError::Contextual));
        assert_eq!(check("oxidp-login-1"), Err(PasswordPolicyError::Contextual));
    }

    #[test]
    fn accepts_reasonable_passphrases() {
        for p in [
            "correct horse battery staple",
            "Tr0ub4dor&3-violet",
            "blue-kettle-marsh-41",
            "alice likes green tea at noon",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        assert_eq!(
            format!("{:?}", Password::new("correct horse battery staple")),
            "Password(***)"
        );
    }
}
