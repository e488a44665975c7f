//! Duration strings in attributes: `"500ms"`, `"30s"`, `"2m"`, `"1h"`, `"1m30s"`.

/// Milliseconds of a duration string, or what is wrong with it.
pub(crate) fn parse_millis(text: &str) -> Result<u64, String> {
    const HELP: &str =
        "write whole numbers with units ms, s, m or h, e.g. \"500ms\", \"30s\", \"1m30s\"";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration; {HELP}"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "bad duration `{text}`: expected a number at `{rest}`; {HELP}"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration `{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!(
                    "bad duration `{text}`: `{number}` has no unit; {HELP}"
                ));
            }
            other => {
                return Err(format!(
                    "bad duration `{text}`: unknown unit `{other}`; {HELP}"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(factor)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| format!("bad duration `{text}`: too long"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_add_up() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("1m30s"), Ok(90_000));
        assert_eq!(parse_millis("2h"), Ok(7_200_000));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(parse_millis("30").unwrap_err().contains("has no unit"));
        assert!(
            parse_millis("5 sec")
                .unwrap_err()
                .contains("unknown unit ` sec`")
        );
        assert!(parse_millis("s").unwrap_err().contains("expected a number"));
        assert!(parse_millis("").unwrap_err().contains("empty duration"));
    }
}
