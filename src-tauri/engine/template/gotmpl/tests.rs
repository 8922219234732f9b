//! Unit tests of the Go template engine itself (Ollama semantics are tested one level up).

use time::macros::datetime;

use super::*;

fn data() -> Value {
    let msg = |role: &str, content: &str| {
        Value::map([("Role", Value::str(role)), ("Content", Value::str(content))])
    };
    Value::map([
        ("System", Value::str("sys")),
        ("Empty", Value::str("")),
        ("N", Value::Int(3)),
        (
            "Messages",
            Value::list(vec![
                msg("user", "hi"),
                msg("assistant", "hello"),
                msg("user", "bye"),
            ]),
        ),
        (
            "Map",
            Value::map([("b", Value::Int(2)), ("a", Value::Int(1))]),
        ),
    ])
}

fn limits() -> Limits {
    Limits {
        fuel: 100_000,
        max_output: 10_000,
        now: datetime!(2025-01-15 12:00 UTC),
    }
}

fn render(src: &str) -> Result<String, GoError> {
    let t = Template::parse(src)?;
    let mut out = String::new();
    t.execute(&data(), &mut limits(), &mut out)?;
    Ok(out)
}

fn ok(src: &str) -> String {
    render(src).unwrap_or_else(|e| panic!("{src:?} failed: {e:?}"))
}

fn err(src: &str) -> GoError {
    match render(src) {
        Ok(out) => panic!("{src:?} rendered {out:?}"),
        Err(e) => e,
    }
}

#[test]
fn text_fields_and_trim_markers() {
    assert_eq!(ok("a {{ .System }} b"), "a sys b");
    assert_eq!(ok("a \n {{- .System -}} \n b"), "asysb");
    assert_eq!(ok("{{.System}}{{ $.System }}"), "syssys");
    assert_eq!(ok("x {{- /* a comment */ -}} y"), "xy");
    assert_eq!(ok("x{{/* c */}}y"), "xy");
    assert_eq!(ok("{{ .Missing }}|{{ .Missing.Deeper }}"), "|");
    assert_eq!(
        ok("{{ -3 }} {{ 1.5 }} {{ 0x10 }} {{ 'a' }} {{ true }} {{ `raw\\n` }} {{ \"q\\n\" }}"),
        "-3 1.5 16 97 true raw\\n q\n"
    );
}

#[test]
fn conditionals() {
    let t = r#"{{ if eq .N 1 }}one{{ else if eq .N 3 }}three{{ else }}other{{ end }}"#;
    assert_eq!(ok(t), "three");
    assert_eq!(ok("{{ if .Empty }}a{{ else }}b{{ end }}"), "b");
    assert_eq!(ok("{{ if and .System .Empty }}a{{ else }}b{{ end }}"), "b");
    assert_eq!(
        ok("{{ or .Empty .System }}|{{ and .System .N }}|{{ or .Empty 0 }}"),
        "sys|3|0"
    );
    assert_eq!(
        ok("{{ if not .Empty }}y{{ end }}{{ if ne .System \"x\" }}z{{ end }}"),
        "yz"
    );
    assert_eq!(
        ok("{{ eq .N 1 2 3 }} {{ lt 1 2 }} {{ ge 2.5 2 }} {{ gt \"b\" \"a\" }} {{ le 3 3 }}"),
        "true true true true true"
    );
    assert_eq!(ok("{{ with .System }}[{{ . }}]{{ end }}{{ with .Empty }}no{{ else with .N }}{{ . }}{{ end }}"), "[sys]3");
    // `and` stops before evaluating an argument that would fail.
    assert_eq!(ok("{{ and .Empty (index .Messages 99) }}"), "");
}

#[test]
fn ranges_variables_and_loop_control() {
    assert_eq!(
        ok("{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}"),
        "user:hi;assistant:hello;user:bye;"
    );
    assert_eq!(
        ok("{{ range $i, $m := .Messages }}{{ $i }}={{ $m.Content }},{{ end }}"),
        "0=hi,1=hello,2=bye,"
    );
    assert_eq!(
        ok("{{ range $k, $v := .Map }}{{ $k }}{{ $v }}{{ end }}"),
        "a1b2"
    );
    assert_eq!(ok("{{ range .N }}{{ . }}{{ end }}"), "012");
    assert_eq!(ok("{{ range .Missing }}x{{ else }}empty{{ end }}"), "empty");
    assert_eq!(ok("{{ range .Messages }}{{ if eq .Role \"assistant\" }}{{ continue }}{{ end }}{{ .Content }}{{ end }}"), "hibye");
    assert_eq!(ok("{{ range .Messages }}{{ if eq .Role \"assistant\" }}{{ break }}{{ end }}{{ .Content }}{{ end }}"), "hi");
    // Assignment reaches the outer variable; declarations inside the loop do not leak.
    assert_eq!(ok("{{ $s := \"\" }}{{ range .Messages }}{{ $s = printf \"%s%s\" $s .Content }}{{ end }}{{ $s }}"), "hihellobye");
    assert_eq!(
        ok("{{- range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}{{ if $last }}last={{ .Content }}{{ end }}{{ end }}"),
        "last=bye"
    );
    let e = err("{{ range .Messages }}{{ $x := 1 }}{{ end }}{{ $x }}");
    assert_eq!(e.kind, GoErrorKind::Exec);
    assert!(e.message.contains("undefined variable"), "{e:?}");
}

#[test]
fn functions() {
    assert_eq!(
        ok("{{ len .Messages }} {{ len .System }} {{ len .Map }}"),
        "3 3 2"
    );
    assert_eq!(ok("{{ (index .Messages 1).Content }} {{ index .Map \"b\" }} {{ index .Messages 2 \"Role\" }}"), "hello 2 user");
    assert_eq!(
        ok("{{ len (slice .Messages 1) }} {{ slice .System 1 2 }} {{ slice .System 1 }}"),
        "2 y ys"
    );
    assert_eq!(
        ok("{{ printf \"%s-%d-%v-%t-%q-%5s|%-3d|%.2f%%\" \"a\" 7 .N true \"x\" \"r\" 1 2.5 }}"),
        "a-7-3-true-\"x\"-    r|1  |2.50%"
    );
    assert_eq!(
        ok("{{ printf \"%d\" \"s\" }} {{ printf \"%s\" }}"),
        "%!d(string=s) %!s(MISSING)"
    );
    assert_eq!(
        ok("{{ print 1 2 \"a\" \"b\" 3 }}|{{ println \"x\" 1 }}"),
        "1 2ab3|x 1\n"
    );
    assert_eq!(
        ok("{{ .System | printf \"<%s>\" }} {{ \"a\" | eq \"a\" }}"),
        "<sys> true"
    );
    assert_eq!(
        ok("{{ json .Map }} {{ json \"<a&b>\" }} {{ .Messages }}"),
        concat!(
            r#"{"a":1,"b":2} "\u003ca\u0026b\u003e" "#,
            r#"[{"Content":"hi","Role":"user"},{"Content":"hello","Role":"assistant"},{"Content":"bye","Role":"user"}]"#
        )
    );
    assert_eq!(
        ok("{{ currentDate }} {{ yesterdayDate }}"),
        "2025-01-15 2025-01-14"
    );
    assert!(err("{{ index .Messages 5 }}")
        .message
        .contains("index out of range"));
    assert!(err("{{ slice .System 2 1 }}")
        .message
        .contains("invalid slice index"));
    assert!(err("{{ eq .System 1 }}")
        .message
        .contains("incompatible types"));
    assert!(err("{{ len .N }}").message.contains("len of type int"));
    assert!(err("{{ .System.Foo }}")
        .message
        .contains("can't evaluate field Foo"));
    assert!(err("{{ .System 1 }}").message.contains("non-function"));
}

#[test]
fn syntax_errors_name_the_line() {
    let cases = [
        ("a\n{{ .Prompt ", "unclosed action"),
        ("{{ if .X }}", "missing {{end}}"),
        ("x\n\n{{ end }}", "unexpected {{end}}"),
        ("{{ nosuch 1 }}", "function \"nosuch\" not defined"),
        ("{{ break }}", "outside {{range}}"),
        (r#"{{ define "x" }}{{ end }}"#, "not supported"),
        (r#"{{ template "x" }}"#, "not supported"),
        ("{{ (len .X }}", "unclosed left paren"),
        ("{{ \"abc }}", "unterminated quoted string"),
        (
            "{{ if .A }}{{ else }}{{ else }}{{ end }}",
            "expected {{end}}",
        ),
    ];
    for (src, want) in cases {
        let e = err(src);
        assert_eq!(e.kind, GoErrorKind::Syntax, "{src:?}: {e:?}");
        assert!(e.message.contains(want), "{src:?}: {e:?}");
        assert!(e.line.is_some(), "{src:?}: {e:?}");
    }
    assert_eq!(err("a\n{{ .Prompt ").line, Some(2));
}

#[test]
fn nesting_is_capped_at_parse_time() {
    let deep_ifs = "{{ if true }}".repeat(150) + &"{{ end }}".repeat(150);
    assert!(err(&deep_ifs).message.contains("nested too deeply"));
    let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(150), ")".repeat(150));
    assert!(err(&deep_parens).message.contains("nested too deeply"));
    let ok_parens = format!("{{{{ {}1{} }}}}", "(".repeat(20), ")".repeat(20));
    assert_eq!(ok(&ok_parens), "1");
}

#[test]
fn budget_stops_nested_loops_and_output() {
    let nested = "{{ range 100000 }}{{ range 100000 }}{{ end }}{{ end }}";
    assert_eq!(err(nested).kind, GoErrorKind::Fuel);
    let loud = "{{ range 100000 }}xxxxxxxxxxxxxxxxxxxx{{ end }}";
    assert_eq!(err(loud).kind, GoErrorKind::Output);
    let doubling =
        "{{ $s := \"xxxxxxxxxxxxxxxx\" }}{{ range 64 }}{{ $s = printf \"%s%s\" $s $s }}{{ end }}";
    assert_eq!(err(doubling).kind, GoErrorKind::Fuel);
}

#[test]
fn identifiers_and_response_cut() {
    let t = Template::parse(
        "{{ .System }}{{ range $i, $m := .Messages }}{{ $.Tools }}{{ (len .X) }}{{ end }}",
    )
    .unwrap();
    let ids: Vec<String> = t.identifiers().into_iter().collect();
    assert_eq!(ids, ["$", "messages", "system", "tools", "x"]);

    let t = Template::parse("A{{ .Prompt }}B{{ .Response }}C{{ if .X }}D{{ end }}").unwrap();
    let mut out = String::new();
    let d = Value::map([
        ("Prompt", Value::str("p")),
        ("Response", Value::str("r")),
        ("X", Value::Bool(true)),
    ]);
    t.cut_after_response()
        .execute(&d, &mut limits(), &mut out)
        .unwrap();
    assert_eq!(out, "ApBr");

    // Inside a branch: the rest of the branch, its else and everything after go.
    let t = Template::parse("{{ if .X }}<{{ .Response }}>{{ else }}E{{ end }}T").unwrap();
    let mut out = String::new();
    t.cut_after_response()
        .execute(&d, &mut limits(), &mut out)
        .unwrap();
    assert_eq!(out, "<r");
}

#[test]
fn printf_width_and_precision_are_bounded() {
    assert_eq!(ok("{{ len (printf \"%.1000000000f\" 1.5) }}"), "1002");
    assert_eq!(ok("{{ len (printf \"%1000000000d\" 7) }}"), "65536");
}
