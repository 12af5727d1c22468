use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::*;

struct Fixture {
    root: Value,
    item: Value,
    lookups: HashMap<String, Map<String, Value>>,
    xrefs: HashMap<String, HashMap<String, String>>,
}

fn fixture() -> Fixture {
    let root: Value = serde_json::from_str(
        r#"{"Id": "006A", "Name": "  Acme SA  ", "Amount": 15000.50, "AmountText": "99.95",
            "StageName": "Closed Won", "CurrencyIsoCode": null, "Empty": "",
            "CloseDate": "2026-11-20", "LastModifiedDate": "2026-11-20T09:15:00Z",
            "PaymentTerms": "Net 30", "AccountId": "001A",
            "Lines": [{"Quantity": 3, "UnitPrice": "19.99"}, {"Quantity": 2, "UnitPrice": 0.10}]}"#,
    )
    .unwrap();
    let mut terms = Map::new();
    terms.insert("Net 30".into(), json!("30D"));
    Fixture {
        root,
        item: json!({"Quantity": 3, "UnitPrice": "19.99", "Discount": "10"}),
        lookups: HashMap::from([("payment_terms".to_owned(), terms)]),
        xrefs: HashMap::from([(
            "customer".to_owned(),
            HashMap::from([("001A".to_owned(), "PARTY-7".to_owned())]),
        )]),
    }
}

/// Evaluates `text` as parsed, again with its repeated sub-expressions shared through a memo,
/// and again with its paths read from filled slot tables (as mappings run): all must agree,
/// value or error.
fn eval(text: &str) -> Result<Value, EvalError> {
    let f = fixture();
    let expr = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let scope = Scope {
        root: &f.root,
        item: Some(&f.item),
        lookups: &f.lookups,
        xrefs: &f.xrefs,
        memo: None,
        root_slots: &[],
        item_slots: &[],
    };
    let plain = expr.eval(&scope).map(Val::into_json);
    let mut shared = expr.clone();
    let slots = super::share([&mut shared]);
    let memo = super::Memo::new(slots);
    let with_memo = Scope {
        memo: Some(&memo),
        ..scope
    };
    let first = shared.eval(&with_memo).map(Val::into_json);
    let again = shared.eval(&with_memo).map(Val::into_json);
    assert_eq!(first, plain, "{text}: sharing changes the result");
    assert_eq!(
        again, plain,
        "{text}: a second evaluation from the memo differs"
    );
    let mut slotted = shared.clone();
    let tables = super::Slots::assign([(&mut slotted, true)]);
    let (mut root_slots, mut item_slots) = (Vec::new(), Vec::new());
    tables.root.fill(Some(&f.root), &mut root_slots);
    tables.item.fill(Some(&f.item), &mut item_slots);
    memo.clear();
    let with_slots = Scope {
        root_slots: &root_slots,
        item_slots: &item_slots,
        ..with_memo
    };
    assert_eq!(
        slotted.eval(&with_slots).map(Val::into_json),
        plain,
        "{text}: reading paths from slots changes the result"
    );
    plain
}

#[test]
fn paths_read_from_slots_find_what_a_walk_finds() {
    let text = "coalesce($.a.x, $.a.y[1], $.b.z, $.a.w.v, item.q, item.r[0], $)";
    let walking = parse(text).unwrap();
    let mut expr = walking.clone();
    let slots = super::Slots::assign([(&mut expr, true)]);
    // `$.a.x`, `$.a.y`, `$.a.w` under `$.a` (the first name most paths share); `$.b.z` and `$`
    // stay paths; `item.q`, `item.r`.
    assert_eq!(slots.root.len(), 3);
    assert_eq!(slots.item.len(), 2);
    let mut slotted = 0;
    expr.visit(&mut |e| slotted += usize::from(matches!(e.node, Node::Slot(_))));
    assert_eq!(slotted, 5);
    for (root, item) in [
        (
            json!({"a": {"x": null, "y": [0, "Y"]}, "b": {"z": 1}}),
            json!({"q": null, "r": [7]}),
        ),
        (json!({"a": {"w": {"v": "V"}, "x": ""}}), json!({})),
        (json!({"a": 3}), json!([1])),
        // A large object is searched per name instead of merged.
        (
            json!({"a": (0..40).map(|n| (format!("k{n}"), json!(n))).chain([("x".into(), json!("X"))]).collect::<Map<String, Value>>()}),
            json!({"q": "Q"}),
        ),
    ] {
        let f = fixture();
        let plain = Scope {
            root: &root,
            item: Some(&item),
            lookups: &f.lookups,
            xrefs: &f.xrefs,
            memo: None,
            root_slots: &[],
            item_slots: &[],
        };
        let walked = walking.eval(&plain).map(Val::into_json);
        let (mut root_slots, mut item_slots) = (Vec::new(), Vec::new());
        slots.root.fill(Some(&root), &mut root_slots);
        slots.item.fill(Some(&item), &mut item_slots);
        let filled = Scope {
            root_slots: &root_slots,
            item_slots: &item_slots,
            ..plain
        };
        assert_eq!(
            expr.eval(&filled).map(Val::into_json),
            walked,
            "{root} {item}"
        );
        // Unfilled tables: the paths are walked.
        assert_eq!(expr.eval(&plain).map(Val::into_json), walked);
    }
}

#[test]
fn repeated_sub_expressions_share_a_slot() {
    let mut expr =
        parse("decimal(item.Quantity) * decimal(item.Quantity) + decimal(item.Price)").unwrap();
    // `decimal(item.Quantity)`; the path inside it is read again as cheaply as a slot.
    assert_eq!(super::share([&mut expr]), 1);
    assert!(matches!(&expr.node, Node::Binary(_, sum, _)
        if matches!(&sum.node, Node::Binary(_, l, r)
            if matches!(l.node, Node::Memo(0, _)) && matches!(r.node, Node::Memo(0, _)))));
    let mut one = parse("trim(item.Name)").unwrap();
    let mut two = parse("upper(trim(item.Name))").unwrap();
    assert_eq!(
        super::share([&mut one, &mut two]),
        1,
        "across rules of one scope"
    );
    let mut alone = parse("item.a + item.b").unwrap();
    assert_eq!(super::share([&mut alone]), 0);
    let mut paths = parse("item.a + item.a * $.b.c - $.b.c").unwrap();
    assert_eq!(super::share([&mut paths]), 0, "paths are not shared");
    let mut deeper = parse("$.b.c[0].d.e + $.b.c[0].d.e").unwrap();
    assert_eq!(super::share([&mut deeper]), 0, "nor long ones");
}

fn ok(text: &str) -> Value {
    eval(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn paths_literals_and_missing_parts() {
    assert_eq!(ok("$.Id"), json!("006A"));
    assert_eq!(ok("$.Lines[1].Quantity"), json!(2));
    assert_eq!(ok("$.Nope.Deeper[3]"), Value::Null);
    assert_eq!(ok("item.UnitPrice"), json!("19.99"));
    assert_eq!(ok(r#"'it\'s' == "it's""#), json!(true));
}

#[test]
fn money_is_decimal_to_the_cent() {
    assert_eq!(ok("$.Amount + 0.01").to_string(), "15000.51");
    assert_eq!(
        ok("round(item.Quantity * item.UnitPrice * (1 - item.Discount / 100), 2)").to_string(),
        "53.97"
    );
    assert_eq!(ok("sum($.Lines, 'UnitPrice')").to_string(), "20.09");
    assert_eq!(ok("0.1 + 0.2 == 0.3"), json!(true));
    assert_eq!(ok("round(2.5, 0)").to_string(), "3");
    assert_eq!(ok("round(10, 2)").to_string(), "10.00");
    // 1 × 1299.00 at 12.5%: half up as the CRM, half to even as Tryton.
    assert_eq!(
        ok("round(1299.00 * (1 - 12.5 / 100), 2)").to_string(),
        "1136.63"
    );
    assert_eq!(
        ok("round(1299.00 * (1 - 12.5 / 100), 2, 'half_up')").to_string(),
        "1136.63"
    );
    assert_eq!(
        ok("round(1299.00 * (1 - 12.5 / 100), 2, 'half_even')").to_string(),
        "1136.62"
    );
    assert_eq!(ok("round(-2.5, 0, 'half_even')").to_string(), "-2");
    assert_eq!(ok("round(0.125, 2, 'half_even')").to_string(), "0.12");
    assert_eq!(ok("round(0.135, 2, 'half_even')").to_string(), "0.14");
    assert_eq!(ok("decimal($.AmountText) * 2").to_string(), "199.90");
}

#[test]
fn strings() {
    assert_eq!(ok("trim($.Name)"), json!("Acme SA"));
    assert_eq!(ok("upper(trim($.Name))"), json!("ACME SA"));
    assert_eq!(ok("concat($.Id, '-', null, 7)"), json!("006A-7"));
    assert_eq!(ok("replace($.StageName, ' ', '_')"), json!("Closed_Won"));
    assert_eq!(ok("substring($.Id, 1, 2)"), json!("06"));
    assert_eq!(ok("join(split('a;b;c', ';'), '|')"), json!("a|b|c"));
    assert_eq!(ok("pad_left('42', 5, '0')"), json!("00042"));
    assert_eq!(ok("pad_right('ab', 4)"), json!("ab  "));
    assert_eq!(ok("len($.Lines) + len('héllo')").to_string(), "7");
    assert_eq!(ok("trim($.Missing)"), Value::Null);
}

#[test]
fn conditions_coalesce_and_laziness() {
    assert_eq!(
        ok("coalesce($.CurrencyIsoCode, $.Empty, 'EUR')"),
        json!("EUR")
    );
    assert_eq!(
        ok("if($.StageName == 'Closed Won', 'won', 'open')"),
        json!("won")
    );
    // The branch not taken would fail; it is never evaluated.
    assert_eq!(ok("if(true, 1, $.Name * 2)"), json!(1));
    assert_eq!(ok("coalesce($.Id, $.Name * 2)"), json!("006A"));
    assert_eq!(
        ok("not ($.Amount > 20000) and $.Id != 'x' or false"),
        json!(true)
    );
}

#[test]
fn lookups_xrefs_and_dates() {
    assert_eq!(ok("lookup('payment_terms', $.PaymentTerms)"), json!("30D"));
    assert_eq!(
        ok("lookup('payment_terms', 'Net 90', 'IMMEDIATE')"),
        json!("IMMEDIATE")
    );
    assert_eq!(ok("xref('customer', $.AccountId)"), json!("PARTY-7"));
    assert_eq!(
        ok("date($.CloseDate, '%Y-%m-%d', '%d/%m/%Y')"),
        json!("20/11/2026")
    );
    assert_eq!(
        ok("date($.LastModifiedDate, 'rfc3339', '%Y-%m-%d %H:%M')"),
        json!("2026-11-20 09:15")
    );
}

#[test]
fn run_time_errors_are_typed_and_point_at_the_text() {
    let err = eval("$.Amount + $.Name").unwrap_err();
    assert_eq!(err.code, "not_a_number");
    assert!(err.message.contains("\"  Acme SA  \""), "{}", err.message);
    assert_eq!(err.span, Span { start: 11, end: 17 });
    assert_eq!(eval("1 / (2 - 2)").unwrap_err().code, "division_by_zero");
    assert_eq!(
        eval("round(1.5, 0, 'up')").unwrap_err().code,
        "bad_argument"
    );
    // Text compared with a boolean: "true"/"false" coerce, anything else is an error.
    assert_eq!(ok("'false' == false"), json!(true));
    assert_eq!(ok("'TRUE' != true"), json!(false));
    assert_eq!(eval("'maybe' != false").unwrap_err().code, "type_mismatch");
    assert_eq!(eval("1 == true").unwrap_err().code, "type_mismatch");
    assert_eq!(ok("'12.50' == 12.5"), json!(true));
    assert_eq!(
        eval("xref('customer', 'unknown')").unwrap_err().code,
        "missing_xref"
    );
    assert_eq!(
        eval("lookup('nope', 'x')").unwrap_err().code,
        "unknown_lookup"
    );
    assert_eq!(
        eval("date('20/11/2026', '%Y-%m-%d', '%Y')")
            .unwrap_err()
            .code,
        "bad_date"
    );
    assert_eq!(eval("$.Lines > 3").unwrap_err().code, "type_mismatch");
    let long = eval(&format!("'{}' * 2", "x".repeat(200))).unwrap_err();
    assert!(
        long.message.chars().count() < 120,
        "values are cut short: {}",
        long.message
    );
}

#[test]
fn parse_errors_name_the_problem_and_its_place() {
    let cases = [
        ("trimm($.Name)", "unknown function 'trimm'", 0, 5),
        (
            "trim($.Name, 2)",
            "trim takes 1 argument(s), given 2",
            0,
            15,
        ),
        ("round(1)", "round takes 2 to 3 arguments, given 1", 0, 8),
        ("$.Name +", "the expression ends too early", 8, 8),
        ("Name", "unknown name 'Name'", 0, 4),
        ("'open", "unclosed string", 0, 5),
        ("$.Id # x", "unexpected character '#'", 5, 6),
        ("($.Id", "expected ')'", 5, 5),
        ("$.Id $.Name", "unexpected dollar after the end", 5, 6),
        ("'it''s'", "unexpected string after the end", 4, 7),
        ("'a\\q'", "unknown escape \\q", 2, 4),
    ];
    for (text, message, start, end) in cases {
        let err = parse(text).unwrap_err();
        assert!(err.message.contains(message), "{text}: {}", err.message);
        assert_eq!(
            (err.span.start, err.span.end),
            (start, end),
            "{text}: {}",
            err.message
        );
    }
}

#[test]
fn every_function_is_documented_with_a_matching_signature() {
    for function in FUNCTIONS {
        assert!(
            function
                .signature
                .starts_with(&format!("{}(", function.name))
        );
        assert!(!function.doc.is_empty());
    }
}

#[test]
fn the_readme_documents_every_function() {
    let readme = include_str!("../../../README.md");
    for function in FUNCTIONS {
        assert!(
            readme.contains(&format!("`{}(", function.name)),
            "README lacks {}",
            function.name
        );
    }
}

#[test]
fn arithmetic_groups_to_the_left_and_binds_products_first() {
    assert_eq!(ok("10 - 2 - 3").to_string(), "5");
    assert_eq!(ok("24 / 4 / 2").to_string(), "3");
    assert_eq!(ok("2 + 3 * 4 - 1").to_string(), "13");
}
