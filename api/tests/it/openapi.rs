//! The OpenAPI document: served, 3.1, and listing exactly the routes the router declares
//! (read from the `.route(…)` calls in the crate's source), each of which is routed.

use std::collections::BTreeSet;
use std::path::Path;

use livegate_core::db::Backend;
use reqwest::Method;

use crate::support::TestApp;

/// Every `.route("path", get(…).post(…))` in `dir`'s Rust files: (METHOD, path).
fn declared_routes(dir: &Path, found: &mut BTreeSet<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            declared_routes(&path, found);
            continue;
        }
        // `src/web.rs` routes the console's and watch page's HTML and assets, outside
        // `/api/v1`: pages, not operations.
        if path.extension().is_none_or(|ext| ext != "rs") || path.ends_with("src/web.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let mut rest = source.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(open) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some(end) = open.find('"') else { continue };
            let route = &open[..end];
            // The call's arguments: up to the parenthesis that closes `.route(`.
            let args = &open[end + 1..];
            let mut depth = 1;
            let mut close = args.len();
            for (index, c) in args.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = index;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let args = &args[..close];
            for method in ["get", "post", "patch", "delete", "put"] {
                let call = format!("{method}(");
                let mut from = 0;
                while let Some(at) = args[from..].find(&call) {
                    let start = from + at;
                    let before = args[..start].chars().next_back();
                    // The chat WebSocket (`GET /ws`, outside `/api/v1`) is an upgrade, not an
                    // operation OpenAPI describes; docs/chat.md is its contract.
                    if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && route != "/ws" {
                        found.insert((method.to_uppercase(), route.to_owned()));
                    }
                    from = start + call.len();
                }
            }
        }
    }
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_nothing_else() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let reply = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        reply.body["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in reply.body["paths"].as_object().unwrap() {
        let path = path
            .strip_prefix("/api/v1")
            .expect("every path is under /api/v1");
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    let mut declared = BTreeSet::new();
    declared_routes(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut declared,
    );
    assert!(
        declared.len() >= 20,
        "the source scan found the routes: {declared:?}"
    );
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&declared).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not declared: {unrouted:?}"
    );
    // And each is routed: no "no such route" and no 405.
    for (method, path) in &documented {
        let path = format!("/api/v1{}", path.replace("{id}", "1"));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app.call(method.clone(), &path, None, None).await;
        assert_ne!(reply.status, 405, "{method} {path}");
        assert!(
            !(reply.status == 404 && reply.body["error"]["message"] == "no such route"),
            "{method} {path} is not routed"
        );
    }
    app.stop().await;
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::Object(fields) => {
            if let Some(target) = fields.get("$ref").and_then(|r| r.as_str()) {
                found.push(target);
            }
            fields.values().for_each(|v| refs(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[test]
fn every_operation_describes_its_bodies_and_refusals() {
    use livegate_api::validate;

    let doc = serde_json::to_value(livegate_api::openapi::document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut found = Vec::new();
    refs(&doc, &mut found);
    for target in &found {
        let name = target.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.get(name).is_some(), "{target} names no schema");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let (success, answer) = responses
                .iter()
                .find(|(status, _)| status.starts_with('2'))
                .unwrap_or_else(|| panic!("{method} {path} has no success"));
            // JSON, but for the live feed's event stream and a recording's file.
            let media = match (method.as_str(), path.as_str()) {
                ("get", "/api/v1/admin/live/events") => "text/event-stream",
                ("get", "/api/v1/recordings/{id}/download") => "video/mp4",
                ("get", "/api/v1/rooms/{id}/cover") => "image/jpeg",
                _ => "application/json",
            };
            let content = answer["content"].as_object();
            let schema = &answer["content"][media]["schema"];
            assert_eq!(
                schema.is_object(),
                success != "204",
                "{method} {path}: a {media} answer unless 204"
            );
            assert!(
                content.is_none_or(|content| content.len() == 1),
                "{method} {path}: one media type"
            );
            for (status, refusal) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
                assert_eq!(
                    refusal["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
            assert!(responses.contains_key("503"), "{method} {path}");
            if operation.get("requestBody").is_some() {
                for status in ["400", "413"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
    // The limits the derives spell out are the validation's.
    let field = |schema: &str, field: &str, key: &str| {
        schemas[schema]["properties"][field][key].as_u64().unwrap() as usize
    };
    assert_eq!(
        field("Register", "username", "maxLength"),
        validate::USERNAME_MAX
    );
    assert_eq!(
        field("Register", "password", "minLength"),
        validate::PASSWORD_MIN
    );
    assert_eq!(
        field("Register", "password", "maxLength"),
        validate::PASSWORD_MAX
    );
    assert_eq!(
        field("Login", "password", "maxLength"),
        validate::PASSWORD_MAX
    );
    assert_eq!(
        field("CreateRoom", "title", "maxLength"),
        validate::TITLE_MAX
    );
    assert_eq!(
        field("PatchRoom", "title", "maxLength"),
        validate::TITLE_MAX
    );
    assert_eq!(
        field("CreateRoom", "publish_allow_cidrs", "maxItems"),
        validate::CIDRS_MAX
    );
    assert_eq!(
        field("NewGift", "name", "maxLength"),
        validate::GIFT_NAME_MAX
    );
    assert_eq!(
        field("GiftPatch", "name", "maxLength"),
        validate::GIFT_NAME_MAX
    );
    for schema in ["NewGift", "GiftPatch"] {
        assert_eq!(
            schemas[schema]["properties"]["price"]["maximum"].as_i64(),
            Some(validate::PRICE_MAX),
            "{schema}"
        );
    }
}
