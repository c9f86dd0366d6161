//! nginx-style configuration files (nginx, nginx-rtmp and SRS share the syntax), parsed into a
//! tree of directives so that tests can check what the shipped configurations say.

/// One directive of an nginx-style configuration (SRS uses the same syntax).
#[derive(Debug)]
pub struct Directive {
    /// Its name.
    pub name: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The directives of its block (empty for a simple directive).
    pub block: Vec<Directive>,
}

impl Directive {
    /// The directives named `name` in this block.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Directive> + 'a {
        self.block.iter().filter(move |d| d.name == name)
    }

    /// The first directive named `name` in this block (panics if there is none).
    pub fn one<'a>(&'a self, name: &'a str) -> &'a Directive {
        self.all(name)
            .next()
            .unwrap_or_else(|| panic!("no `{name}` in `{}`", self.name))
    }

    /// The first argument of the first directive named `name` in this block.
    pub fn arg<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name)
            .next()
            .and_then(|d| d.args.first())
            .map(String::as_str)
    }

    /// Every directive at any depth.
    pub fn walk(&self) -> Vec<&Directive> {
        let mut out = vec![self];
        for child in &self.block {
            out.extend(child.walk());
        }
        out
    }
}

/// Parses `text` (comments dropped, quoted words kept whole); panics on unbalanced braces.
pub fn parse_nginx(text: &str) -> Directive {
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut word = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                '{' | '}' | ';' if !quoted => {
                    if !word.is_empty() {
                        tokens.push(std::mem::take(&mut word));
                    }
                    tokens.push(c.to_string());
                }
                c if c.is_whitespace() && !quoted => {
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
