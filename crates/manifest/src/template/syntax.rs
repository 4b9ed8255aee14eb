//! Static checks of a template before it runs, where gotmpl is more lenient than Go's parser.
//!
//! - Function names: Go refuses a call of an undefined function when parsing, so `raw` in
//!   `Env` fails even inside a branch that never runs; gotmpl only fails when the call runs.
//! - Blocks: Go refuses an `{{if}}`, `{{range}}`, `{{with}}`, `{{define}}` or `{{block}}`
//!   without its `{{end}}`, and an `{{end}}` or `{{else}}` outside a block; gotmpl accepts
//!   both and silently drops the text after a stray top-level `{{end}}`.
//!
//! Both checks run on text that gotmpl has already lexed or will lex, so they only need to
//! find actions, not to validate them.

use gotmpl::TemplateError;
use gotmpl::parse::{DefineNode, Expr, ListNode, Node, Parser, PipeNode};

use super::encode::{Encoder, Section};
use super::engine::unknown_function;
use super::error::RenderError;

/// The functions of Go's `text/template`, all of which gotmpl provides.
const BUILTINS: [&str; 19] = [
    "and", "call", "eq", "ge", "gt", "html", "index", "js", "le", "len", "lt", "ne", "not", "or",
    "print", "printf", "println", "slice", "urlquery",
];

/// Refuses calls of functions that do not exist in `section`, wherever they are in the
/// template, as Go's parser does.
pub(crate) fn check_functions(text: &str, section: Section) -> Result<(), RenderError> {
    let (tree, defines) = Parser::with_name(Some("data"), text, "{{", "}}")
        .and_then(Parser::parse)
        .map_err(syntax_error)?;
    let mut names = Vec::new();
    collect_list(&tree, &mut names);
    for DefineNode { body, .. } in &defines {
        collect_list(body, &mut names);
    }
    for name in names {
        let known = BUILTINS.contains(&name.as_str())
            || Encoder::from_name(&name).is_some_and(|e| section.allows(e));
        if !known {
            return Err(unknown_function(name, section));
        }
    }
    Ok(())
}

fn collect_list(list: &ListNode, names: &mut Vec<String>) {
    for node in &list.nodes {
        match node {
            Node::List(list) => collect_list(list, names),
            Node::Action(action) => collect_pipe(&action.pipe, names),
            Node::If(branch) | Node::Range(branch) | Node::With(branch) => {
                collect_pipe(&branch.pipe, names);
                collect_list(&branch.body, names);
                if let Some(other) = &branch.else_body {
                    collect_list(other, names);
                }
            }
            Node::Template(call) => {
                if let Some(pipe) = &call.pipe {
                    collect_pipe(pipe, names);
                }
            }
            Node::Define(define) => collect_list(&define.body, names),
            Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }
}

fn collect_pipe(pipe: &PipeNode, names: &mut Vec<String>) {
    for command in &pipe.commands {
        for expr in &command.args {
            collect_expr(expr, names);
        }
    }
}

fn collect_expr(expr: &Expr, names: &mut Vec<String>) {
    match expr {
        Expr::Identifier(_, name) => names.push(name.to_string()),
        Expr::Pipe(_, pipe) => collect_pipe(pipe, names),
        Expr::Chain(_, inner, _) => collect_expr(inner, names),
        _ => {}
    }
}

/// Refuses unbalanced `{{end}}` and misplaced `{{else}}`, as Go's parser does.
pub(crate) fn check_blocks(text: &str) -> Result<(), RenderError> {
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut rest = text;
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        // Lines are counted over each stretch once, so long templates stay linear.
        line += rest[..start].matches('\n').count();
        let action = &rest[start + 2..];
        // `{{- ` trims the text before; `{{-3}}` is the number -3.
        let action = match action.strip_prefix('-') {
            Some(after) if after.starts_with(|c: char| c.is_ascii_whitespace()) => after,
            _ => action,
        };
        let action = action.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let Some(end) = action_end(action) else {
            // Unterminated: gotmpl's lexer reports it with a position.
            return Ok(());
        };
        match keyword(&action[..end]) {
            Some(block @ ("if" | "range" | "with" | "define" | "block")) => {
                open.push((block, line))
            }
            Some("end") if open.pop().is_none() => {
                return Err(block_error(line, "unexpected {{end}}"));
            }
            Some("else") if !matches!(open.last(), Some(("if" | "range" | "with", _))) => {
                return Err(block_error(line, "unexpected {{else}}"));
            }
            _ => {}
        }
        let consumed = rest.len() - action.len() + end + 2;
        line += rest[start..consumed].matches('\n').count();
        rest = &rest[consumed..];
    }
    match open.last() {
        Some((block, line)) => Err(block_error(
            *line,
            &format!("unexpected EOF: {{{{{block}}}}} has no {{{{end}}}}"),
        )),
        None => Ok(()),
    }
}

/// A parse error of gotmpl, without the `template: ` prefix of Go's message format.
pub(crate) fn syntax_error(error: TemplateError) -> RenderError {
    let message = error.to_string();
    let message = message.strip_prefix("template: ").unwrap_or(&message);
    RenderError::Syntax {
        message: message.to_owned(),
    }
}

fn block_error(line: usize, message: &str) -> RenderError {
    RenderError::Syntax {
        message: format!("data:{line}: {message}"),
    }
}

/// The offset of the `}}` that closes an action whose text starts at `action`, skipping
/// comments and quoted strings, raw strings and character literals.
fn action_end(action: &str) -> Option<usize> {
    if let Some(comment) = action.strip_prefix("/*") {
        let close = comment.find("*/")? + 4;
        return action[close..].find("}}").map(|at| close + at);
    }
    let bytes = action.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1 + action[i + 1..].find('`')?;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The keyword an action starts with, if its first word is one.
fn keyword(action: &str) -> Option<&str> {
    let end = action
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(action.len());
    let word = &action[..end];
    matches!(
        word,
        "if" | "range" | "with" | "define" | "block" | "end" | "else"
    )
    .then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(text: &str) -> Result<(), String> {
        check_blocks(text).map_err(|e| e.to_string())
    }

    #[test]
    fn balanced_blocks_pass() {
        for text in [
            "{{ if 1 }}a{{ else if 2 }}b{{ else }}c{{ end }}",
            "{{- range $i := . -}}{{ with 1 }}{{ end }}{{ end }}",
            r#"{{ define "t" }}{{ "{{ end }}" }}{{ `}}{{end}}` }}{{ '}' }}{{ end }}"#,
            "{{/* {{ if }} */}}{{ -3 }}{{-3}}",
            "{{ endless }}{{ iffy }}",
        ] {
            assert_eq!(blocks(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn unbalanced_blocks_are_refused() {
        for (text, message) in [
            ("{{ if true }}x", "{{if}} has no {{end}}"),
            ("a\n{{ range . }}", "data:2: unexpected EOF"),
            ("{{\n1\n}}\n{{ end }}", "data:4: unexpected {{end}}"),
            (r#"{{ define "a" }}x"#, "{{define}} has no {{end}}"),
            ("a{{ end }}b", "unexpected {{end}}"),
            ("{{ else }}", "unexpected {{else}}"),
            (
                r#"{{ define "a" }}{{ else }}{{ end }}"#,
                "unexpected {{else}}",
            ),
        ] {
            let error = blocks(text).unwrap_err();
            assert!(error.contains(message), "{text}: {error}");
        }
    }
}
