//! Splits a `--pre-stop` command line into words the way a POSIX shell would, without running one.
//!
//! Supported: blanks between words, 'single quotes' (literal), "double
//! quotes" (where \" \\ \$ \` escape), and a backslash outside quotes.
//! Not supported, on purpose: expansions, globs, redirections, pipes —
//! write `sh -c '…'` for those.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unbalanced(line, "single quote '")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(unbalanced(line, "double quote \"")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unbalanced(line, "double quote \"")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(format!("{line:?} ends with a lone backslash")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("the command line is empty".into());
    }
    Ok(words)
}

fn unbalanced(line: &str, what: &str) -> String {
    format!("{line:?} has an unclosed {what}")
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(split("sleep 5").unwrap(), ["sleep", "5"]);
        assert_eq!(split("  a\t b  ").unwrap(), ["a", "b"]);
        assert_eq!(
            split("sh -c 'echo $HOME; exit 3'").unwrap(),
            ["sh", "-c", "echo $HOME; exit 3"]
        );
        assert_eq!(
            split(r#"say "a \"b\" \$c \n""#).unwrap(),
            ["say", "a \"b\" $c \\n"]
        );
        assert_eq!(split(r"a\ b c").unwrap(), ["a b", "c"]);
        assert_eq!(split("x '' y").unwrap(), ["x", "", "y"]);
        assert_eq!(split("pre'mid'post").unwrap(), ["premidpost"]);
    }

    #[test]
    fn rejects_unbalanced_and_empty() {
        assert!(split("sh -c 'oops").unwrap_err().contains("single quote"));
        assert!(split("say \"oops").unwrap_err().contains("double quote"));
        assert!(split("trailing\\").unwrap_err().contains("backslash"));
        assert!(split("   ").unwrap_err().contains("empty"));
        assert!(split("").is_err());
    }
}
