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
