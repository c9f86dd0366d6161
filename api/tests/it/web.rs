//! The console and watch page as the API serves them: the app for every console route, the
//! watch page for room ids only, assets cached for good and revalidated by ETag, and the
//! Content-Security-Policy naming the edge.

use livegate_core::db::Backend;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;

use crate::support::TestApp;

async fn fetch(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap()
}

/// The `/assets/...` paths a page names.
fn assets_of(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_console_route_gets_the_app_with_its_policy() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let mut first = None;
    for path in [
        "/console",
        "/console/",
        "/console/rooms/7",
        "/console/health",
    ] {
        let response = fetch(&app, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers[CONTENT_TYPE], "text/html", "{path}");
        assert_eq!(headers[CACHE_CONTROL], "no-cache", "{path}");
        let csp = headers[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(
            csp.contains("media-src 'self' blob: https://edge.example;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = response.text().await.unwrap();
        assert!(html.contains("<div id=\"app\">"), "{html}");
        assert_eq!(*first.get_or_insert_with(|| html.clone()), html);
    }
    // The API's own answers keep their policy: nothing caches them.
    let api = fetch(&app, "/api/v1/gifts").await;
    assert_eq!(api.headers()[CACHE_CONTROL], "no-store");
    app.stop().await;
}

#[tokio::test]
async fn the_watch_page_is_served_for_room_ids_only() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let page = fetch(&app, "/watch/42").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html");
    let html = page.text().await.unwrap();
    assert_eq!(assets_of(&html).len(), 2, "{html}");
    for path in ["/watch/0", "/watch/abc", "/watch/-3", "/watch/42/more"] {
        let response = fetch(&app, path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn assets_are_immutable_and_revalidate_by_etag() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let html = fetch(&app, "/console").await.text().await.unwrap();
    let assets = assets_of(&html);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "{assets:?}"
    );
    for asset in &assets {
        let response = fetch(&app, asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let headers = response.headers().clone();
        assert_eq!(
            headers[CACHE_CONTROL], "public, max-age=31536000, immutable",
            "{asset}"
        );
        let kind = headers[CONTENT_TYPE].to_str().unwrap();
        let expected: &[&str] = if asset.ends_with(".css") {
            &["text/css"]
        } else {
            &["text/javascript", "application/javascript"]
        };
        assert!(
            expected.iter().any(|e| kind.starts_with(e)),
            "{asset}: {kind}"
        );
        let etag = headers[ETAG].clone();
        let again = app
            .client
            .get(format!("{}{asset}", app.base))
            .header(IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{asset}");
    }
    for path in [
        "/assets/nothing.js",
        "/assets/../console.html",
        "/assets//x",
    ] {
        assert_eq!(
            fetch(&app, path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    app.stop().await;
}
