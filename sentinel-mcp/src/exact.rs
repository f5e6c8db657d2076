//! Canonical JSON that keeps numbers exactly as written.
//!
//! `serde_json::Value` turns a number beyond 64 bits into an `f64`, so
//! `1000000000000000000000000000001` and `1e30` would canonicalize (and
//! digest) alike: an operator who approved one would have approved the
//! other. Ask bindings are therefore digested from this canonical form,
//! read straight from the message text: object keys sorted at every level,
//! no whitespace, strings re-escaped the way `serde_json` writes them, and
//! each number's literal kept byte for byte.

use serde_json::Value;

/// A JSON value with number literals kept as text.
#[derive(Debug, Clone, PartialEq)]
enum Exact {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Exact>),
    Object(Vec<(String, Exact)>),
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 256;

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b) = self.text.as_bytes().get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek()? == b).then(|| self.pos += 1)
    }

    fn value(&mut self) -> Option<Exact> {
        self.ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let v = match self.peek()? {
            b'{' => {
                self.pos += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek()? == b'}' {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.eat(b':')?;
                        let value = self.value()?;
                        members.push((key, value));
                        self.ws();
                        match self.peek()? {
                            b',' => self.pos += 1,
                            b'}' => {
                                self.pos += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Exact::Object(members)
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek()? == b']' {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.peek()? {
                            b',' => self.pos += 1,
                            b']' => {
                                self.pos += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Exact::Array(items)
            }
            b'"' => Exact::String(self.string()?),
            b't' => self.word("true", Exact::Bool(true))?,
            b'f' => self.word("false", Exact::Bool(false))?,
            b'n' => self.word("null", Exact::Null)?,
            _ => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                let literal = &self.text[start..self.pos];
                // Validated by serde_json's own number grammar.
                serde_json::from_str::<serde_json::Number>(literal).ok()?;
                Exact::Number(literal.to_string())
            }
        };
        self.depth -= 1;
        Some(v)
    }

    fn word(&mut self, word: &str, v: Exact) -> Option<Exact> {
        self.text[self.pos..].starts_with(word).then(|| {
            self.pos += word.len();
            v
        })
    }

    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek()? {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    break;
                }
                _ => self.pos += 1,
            }
        }
        serde_json::from_str(self.text.get(start..self.pos)?).ok()
    }
}

fn write(v: &Exact, out: &mut String) {
    match v {
        Exact::Null => out.push_str("null"),
        Exact::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Exact::Number(n) => out.push_str(n),
        Exact::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Exact::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Exact::Object(members) => {
            let mut sorted: Vec<&(String, Exact)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
    }
}

/// The exact canonical text of `params.arguments` in the JSON-RPC message
/// `line` (`{}` when absent), or `None` if the text does not parse.
pub fn call_arguments(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parser = Parser {
        text,
        pos: 0,
        depth: 0,
    };
    let root = parser.value()?;
    let member = |v: &Exact, key: &str| -> Option<Exact> {
        match v {
            Exact::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
            _ => None,
        }
    };
    let args = member(&root, "params")
        .and_then(|p| member(&p, "arguments"))
        .unwrap_or(Exact::Object(Vec::new()));
    let mut out = String::new();
    write(&args, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_big_numbers_exact_and_sorts_keys() {
        let a = call_arguments(
            br#"{"params":{"name":"pay","arguments":{"to":"b\u00e9","amount":1000000000000000000000000000001,"x":[1.50, -0e3]}}}"#,
        )
        .unwrap();
        assert_eq!(
            a,
            r#"{"amount":1000000000000000000000000000001,"to":"bé","x":[1.50,-0e3]}"#
        );
        let b = call_arguments(br#"{"params":{"arguments":{"amount":1e30}}}"#).unwrap();
        assert_ne!(a, b);
        assert_eq!(call_arguments(br#"{"params":{}}"#).unwrap(), "{}");
        // Agrees with the Value-based canonical form where that is exact.
        let v = serde_json::json!({"b":[{"d":1,"c":"x\n"}],"a":null});
        let line = serde_json::json!({"params":{"arguments":v}}).to_string();
        assert_eq!(
            call_arguments(line.as_bytes()).unwrap(),
            crate::store::canonical_json(&v)
        );
    }
}
