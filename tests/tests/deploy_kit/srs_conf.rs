//! SRS's configuration (nginx syntax), parsed as in shipped_configs.rs.

#[derive(Debug)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) block: Vec<Directive>,
}

impl Directive {
    pub(crate) fn one<'a>(&'a self, name: &str) -> &'a Directive {
        self.block
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no `{name}` in `{}`", self.name))
    }

    pub(crate) fn arg<'a>(&'a self, name: &str) -> Option<&'a str> {
        self.block
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.args.first())
            .map(String::as_str)
    }
}

pub(crate) fn parse_nginx(text: &str) -> Directive {
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut word = String::new();
        for c in line.chars() {
            match c {
                '{' | '}' | ';' => {
                    if !word.is_empty() {
                        tokens.push(std::mem::take(&mut word));
                    }
                    tokens.push(c.to_string());
                }
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        tokens.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            tokens.push(word);
        }
    }
    let mut at = 0;
    let block = parse_block(&tokens, &mut at);
    assert_eq!(at, tokens.len(), "unbalanced braces");
    Directive {
        name: "main".to_owned(),
        args: Vec::new(),
        block,
    }
}

fn parse_block(tokens: &[String], at: &mut usize) -> Vec<Directive> {
    let mut out = Vec::new();
    while *at < tokens.len() && tokens[*at] != "}" {
        let name = tokens[*at].clone();
        *at += 1;
        let mut args = Vec::new();
        while tokens[*at] != ";" && tokens[*at] != "{" {
            args.push(tokens[*at].clone());
            *at += 1;
        }
        let block = if tokens[*at] == "{" {
            *at += 1;
            let block = parse_block(tokens, at);
            assert_eq!(tokens[*at], "}");
            block
        } else {
            Vec::new()
        };
        *at += 1;
        out.push(Directive { name, args, block });
    }
    out
}
