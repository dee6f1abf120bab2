//! The rules that put pest's failure into words, tried in order: each looks at what pest
//! expected and the tokens around the failure, and either explains it or passes. The
//! first rules catch mistakes that read the same anywhere; later ones go by what pest
//! expected (a value, a key, a name, …). [`expected_rules`] is the last resort.

use super::{before_name, rule_words, span_at, ErrorContext, SYNTAX};
use crate::diagnostics::Diagnostic;
use crate::syntax::lexer::TokKind;
use crate::syntax::parser::Rule;

type SyntaxRule = fn(&ErrorContext<'_>) -> Option<Diagnostic>;

/// Every rule, in the order they are tried.
pub(super) const RULES: &[SyntaxRule] = &[
    odd_character,
    semicolon,
    entry_outside_block,
    missing_eq,
    prose_line,
    after_declaration_name,
    missing_value,
    in_list_or_sweep,
    value_after_key_missing,
    paren_for_brace,
    sweep_with_bracket,
    second_value_for_a_key,
    in_block,
    use_without_string,
    let_without_name,
    declaration_without_name,
    missing_variant,
    missing_brace,
    top_level,
];

/// Typographic quotes and invisible characters: they read the same wherever they are.
fn odd_character(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    let t = cx.found().filter(|t| t.kind == TokKind::Other)?;
    let c = cx.text[t.start..].chars().next()?;
    if matches!(c, '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2018}' | '\u{2019}' | '\u{00AB}' | '\u{00BB}') {
        return Some(cx.err(
            format!("typographic quote `{c}`: strings use straight double quotes"),
            "not a `\"`",
            "write strings with `\"`, e.g. `shape = \"moons\"` (word processors and chat apps turn quotes curly)",
        ));
    }
    if c.is_whitespace() || c.is_control() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}') {
        let code = format!("U+{:04X}", c as u32);
        return Some(cx.err(
            format!("invisible character {code} in the code"),
            format!("{code} here"),
            "delete it, or replace it with a plain space (text copied from web pages often carries these)",
        ));
    }
    None
}

fn semicolon(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    cx.found_is(";").then(|| {
        cx.err(
            "unexpected `;`",
            "remove this `;`",
            "difflow needs no `;`: write one entry per line, or separate entries and list items with `,`",
        )
    })
}

/// `KEY = VALUE` outside any block: `steps = 5` at the top level.
fn entry_outside_block(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if !(cx.has(Rule::name) && cx.found_is("=")) {
        return None;
    }
    let key = cx.prev_text();
    let i = cx.found_index();
    if cx.scan.tokens.get(i + 1).is_some_and(|t| t.kind == TokKind::Ident) && cx.after(2) == Some("{") {
        let variant = cx.after(1).unwrap_or_default();
        let prev = cx.prev();
        return Some(
            Diagnostic::new(
                SYNTAX,
                format!("`{key} = {variant} {{ … }}` lacks its kind or its name"),
                span_at(cx.file, prev.map_or(cx.pos, |t| t.start), prev.map_or(cx.pos, |t| t.end)),
                "expected `KIND NAME` here",
            )
            .with_help(format!(
                "a declaration starts with its kind and name: `KIND NAME = {variant} {{ … }}`, \
                 e.g. `dataset digits = mnist {{ … }}`"
            )),
        );
    }
    Some(cx.err(
        format!("`{key} = …` is outside a declaration"),
        "a `key = value` entry needs a block",
        format!(
            "entries go inside a declaration's `{{ … }}`; for a constant write `let {key} = …`; \
             a declaration is `KIND NAME = VARIANT {{ … }}`"
        ),
    ))
}

/// A key or `let` name not followed by `=`.
fn missing_eq(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if !cx.has(Rule::eq) || cx.has(Rule::lbrace) {
        return None;
    }
    let prev_text = cx.prev_text();
    let is_let = cx.before(2).is_some_and(|t| cx.tok_text(t) == "let");
    let role = if is_let { format!("`let {prev_text}`") } else { format!("the key `{prev_text}`") };
    let label = if cx.found_is(":") { "use `=` here, not `:`" } else { "expected `=` here" };
    let help = if is_let {
        format!("a constant is written `let {prev_text} = value`")
    } else {
        format!("set a value with `=`: `{prev_text} = …`")
    };
    Some(cx.err(format!("expected `=` after {role}, found {}", cx.found_desc()), label, help))
}

/// Whether pest failed where a declaration's header (kind, name, `=`) goes.
fn at_declaration_header(cx: &ErrorContext<'_>) -> bool {
    cx.has(Rule::eq) && cx.has(Rule::lbrace) && !cx.has(Rule::comma)
}

/// A line of words where a declaration should start: a comment without its `#`.
fn prose_line(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if cx.has(Rule::name) || at_declaration_header(cx) {
        cx.prose_line()
    } else {
        None
    }
}

/// After a declaration's name: `=` or `{` expected.
fn after_declaration_name(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if !at_declaration_header(cx) {
        return None;
    }
    let prev_text = cx.prev_text();
    let msg = format!("expected `=` or `{{` after the name `{prev_text}`, found {}", cx.found_desc());
    let label = if cx.found_is(":") { "use `=` here, not `:`" } else { "expected `= VARIANT` or `{` here" };
    let next_is_brace = cx.after(1) == Some("{");
    let help = match (cx.found(), before_name(cx)) {
        (Some(t), Some(kind)) if t.kind == TokKind::Ident && next_is_brace => {
            format!("write `=` before the variant: `{kind} {prev_text} = {} {{ … }}`", cx.tok_text(t))
        }
        _ => "a declaration is `KIND NAME = VARIANT { key = value … }`; leave out `= VARIANT` for the kind's default"
            .to_string(),
    };
    Some(cx.err(msg, label, help))
}

fn missing_value(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if !cx.has(Rule::value) {
        return None;
    }
    let after = match cx.prev_text() {
        "=" => "after `=`".to_string(),
        "," => "after `,`".to_string(),
        "(" => format!("in `{}(…)`", cx.open_paren_what()),
        "[" => "in the list".to_string(),
        other => format!("after `{other}`"),
    };
    let help = "a value is a number (`1000`, `2e-4`), a string (`\"text\"`), `true`/`false`, a list `[…]`, \
                `sweep(…)`, an inline block (`ddim { steps = 50 }`) or a name";
    Some(cx.err(format!("expected a value {after}, found {}", cx.found_desc()), "expected a value here", help))
}

/// Inside a list or a sweep: an unclosed bracket, a missing `,`, or a key where an item
/// goes.
fn in_list_or_sweep(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if !(cx.has(Rule::rbracket) || cx.has(Rule::rparen)) {
        return None;
    }
    let (close, what) = if cx.has(Rule::rbracket) { ("`]`", "list") } else { ("`)`", cx.open_paren_what()) };
    let found = cx.found();
    let found_desc = cx.found_desc();
    let entry_follows = found.is_some_and(|t| t.kind == TokKind::Ident) && matches!(cx.after(1), Some("=" | ":"));
    if entry_follows || cx.found_is("=") || cx.found_is("}") || found.is_none() {
        if let Some(opener) = cx.open_bracket_at() {
            let mut d = Diagnostic::new(
                SYNTAX,
                format!("unclosed `{}` (the {what} opened here)", &cx.text[opener..opener + 1]),
                span_at(cx.file, opener, opener + 1),
                format!("this {what} is never closed"),
            )
            .with_help(format!("close the {what} with {close} after its last item"));
            if let Some(t) = found {
                d = d.with_label(span_at(cx.file, t.start, t.end), format!("expected {close} before this"));
            }
            return Some(d);
        }
    }
    if cx.found_starts_value() {
        return Some(cx.err(
            format!("missing `,` between {what} items"),
            "expected `,` before this",
            format!("separate {what} items with `,`"),
        ));
    }
    if cx.found_is(":") || cx.found_is("=") {
        return Some(cx.err(
            format!("expected `,` or {close} in the {what}, found {found_desc}"),
            "unexpected here",
            format!("{what} items are values separated by `,`; keys with `=` go in blocks `{{ … }}`"),
        ));
    }
    Some(cx.err(
        format!("expected `,` or {close} in the {what}, found {found_desc}"),
        format!("expected `,` or {close}"),
        format!("separate {what} items with `,` and close the {what} with {close}"),
    ))
}

/// Whether pest failed inside a block, where a key or `}` goes.
fn in_a_block(cx: &ErrorContext<'_>) -> bool {
    cx.has(Rule::key) || cx.has(Rule::rbrace)
}

/// `lr =` with nothing after it: the next line's key was taken as its value.
fn value_after_key_missing(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if !(in_a_block(cx) && cx.found_is("=")) {
        return None;
    }
    let (value, eq, key) = (cx.before(1)?, cx.before(2)?, cx.before(3)?);
    let newline_between = cx.text.as_bytes()[eq.end..value.start].contains(&b'\n');
    if !(value.kind == TokKind::Ident && cx.tok_text(eq) == "=" && newline_between) {
        return None;
    }
    let key = cx.tok_text(key);
    Some(
        Diagnostic::new(
            SYNTAX,
            format!("expected a value after `{key} =`"),
            span_at(cx.file, eq.start, eq.end),
            "nothing follows this `=` on its line",
        )
        .with_help(format!("write the value after `=`, e.g. `{key} = 1000`, or remove the line")),
    )
}

/// `ddim(steps = 5)` or `sweep[…]`-like brackets after a name.
fn paren_for_brace(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if !(in_a_block(cx) && cx.found_is("(") && cx.prev().is_some_and(|t| t.kind == TokKind::Ident)) {
        return None;
    }
    let prev_text = cx.prev_text();
    let help = if prev_text == "sweep" {
        "a sweep is written `sweep(a, b, …)`".to_string()
    } else {
        format!("an inline block uses braces: `{prev_text} {{ key = value, … }}`")
    };
    Some(cx.err(format!("expected `{{` after `{prev_text}`, found `(`"), "use `{` here", help))
}

fn sweep_with_bracket(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    (in_a_block(cx) && cx.prev_text() == "sweep" && cx.found_is("[")).then(|| {
        cx.err(
            "expected `(` after `sweep`, found `[`",
            "use `(` here",
            "a sweep is written with parentheses: `sweep(a, b, …)`",
        )
    })
}

/// `steps = 10, 20`: a second value where the next key goes.
fn second_value_for_a_key(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    let found = cx.found().filter(|t| matches!(t.kind, TokKind::Str | TokKind::Number))?;
    if !(in_a_block(cx) && cx.prev_text() == ",") {
        return None;
    }
    let help = match (cx.before(2), cx.before(3), cx.before(4)) {
        (Some(v), Some(eq), Some(k)) if cx.tok_text(eq) == "=" => format!(
            "for several values write a list: `{} = [{}, {}]`",
            cx.tok_text(k),
            cx.tok_text(v),
            cx.tok_text(found)
        ),
        _ => "for several values write a list: `key = [a, b]`".to_string(),
    };
    Some(cx.err(
        format!("expected the next key after `,`, found {}", cx.found_desc()),
        "a second value for one key?",
        help,
    ))
}

/// Anything else inside a block.
fn in_block(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    if !in_a_block(cx) {
        return None;
    }
    let found = cx.found();
    let found_desc = cx.found_desc();
    if cx.found_is(":") || cx.found_is("=") {
        return Some(cx.err(
            format!("expected a key or `}}`, found {found_desc}"),
            "expected a key before this",
            "entries are written `key = value`",
        ));
    }
    if found.is_some_and(|t| t.kind == TokKind::Str) {
        return Some(cx.err(
            "expected a key or `}`, found a string",
            "keys are names, without quotes",
            "write the key without quotes: `steps = 1000`",
        ));
    }
    if found.is_some_and(|t| matches!(t.kind, TokKind::Number | TokKind::Ident)) && cx.prev_text() != "{" {
        return Some(cx.err(
            format!("expected the next key or `}}` after the value, found {found_desc}"),
            "expected `key = value` or `}`",
            "each entry is `key = value`; one value per key (write a list `[a, b]` for several)",
        ));
    }
    Some(cx.err(
        format!("expected a key or `}}`, found {found_desc}"),
        "expected a key or `}`",
        "a block holds entries `key = value` and ends with `}`",
    ))
}

/// Pest wanted `rule` and nothing else fits: "expected WHAT, found …".
fn expected(cx: &ErrorContext<'_>, rule: Rule, what: &str, label: &str, help: impl Into<String>) -> Option<Diagnostic> {
    cx.has(rule).then(|| cx.err(format!("expected {what}, found {}", cx.found_desc()), label, help))
}

fn use_without_string(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    let help = "write `use \"std/unet.diff\"` or `use \"presets.diff\"` (relative to this file)";
    expected(cx, Rule::string, "a file path in double quotes after `use`", "expected a string here", help)
}

fn let_without_name(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    expected(cx, Rule::let_name, "a name after `let`", "expected a name here", "a constant is `let NAME = value`")
}

fn declaration_without_name(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    let prev_text = cx.prev_text();
    let help = format!("a declaration is `{prev_text} NAME = VARIANT {{ … }}`");
    expected(cx, Rule::name, &format!("a name after `{prev_text}`"), "expected a name here", help)
}

fn missing_variant(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    let help = "name the variant, e.g. `dataset digits = mnist { … }`, or leave out `=` for the kind's default";
    expected(cx, Rule::variant, "a variant after `=`", "expected a variant here", help)
}

fn missing_brace(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    let help = "a declaration ends with its block: `KIND NAME = VARIANT { key = value … }`";
    expected(cx, Rule::lbrace, &format!("`{{` after `{}`", cx.prev_text()), "expected `{` here", help)
}

/// Where a declaration, `use` or `let` should start.
fn top_level(cx: &ErrorContext<'_>) -> Option<Diagnostic> {
    let expected = [Rule::kind, Rule::kw_use, Rule::kw_let, Rule::EOI, Rule::file];
    if !expected.iter().any(|r| cx.has(*r)) {
        return None;
    }
    let (label, help) = if cx.found_is("}") {
        ("this `}` closes nothing", "remove the `}`, or open the block it was meant to close")
    } else {
        (
            "expected a declaration here",
            "a file holds `use \"FILE\"`, `let NAME = value` and declarations `KIND NAME = VARIANT { … }`",
        )
    };
    Some(cx.err(
        format!("expected a declaration (`dataset`, `train`, …), `use` or `let`, found {}", cx.found_desc()),
        label,
        help,
    ))
}

/// The last resort: what pest expected, in words.
pub(super) fn expected_rules(cx: &ErrorContext<'_>) -> Diagnostic {
    let expected: Vec<&str> = cx.positives.iter().map(|r| rule_words(*r)).collect();
    cx.err(
        format!("expected {}, found {}", expected.join(" or "), cx.found_desc()),
        "unexpected here",
        "see `difflow doc` for the syntax of a pipeline",
    )
}
