//! Web panel: "Export CSV" on the history page (with its filters) and "Download recipients
//! (CSV)" on a message's page, served from the same core export as the JSON API.

use reqwest::{header, StatusCode};
use smsgate_tests::app::{PanelClient, PanelResponse, TestApp, ADMIN_PASSWORD};

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn message_id(location: Option<&str>) -> i64 {
    location
        .and_then(|l| l.strip_prefix("/history/"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a message page: {location:?}"))
}

/// The href of the link marked `data-testid="{testid}"`, HTML-unescaped as tera writes it.
fn link(page: &PanelResponse, testid: &str) -> String {
    let marker = format!("data-testid=\"{testid}\"");
    let tag_end = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {testid} link: {}", page.body));
    let tag_start = page.body[..tag_end].rfind("<a ").unwrap();
    let href = &page.body[tag_start..tag_end];
    let at = href.find("href=\"").unwrap() + "href=\"".len();
    let end = href[at..].find('"').unwrap() + at;
    href[at..end].replace("&amp;", "&").replace("&#x2F;", "/")
}

/// A CSV download's rows, read from the raw bytes (the byte-order mark checked and
/// dropped; a text decoder might drop it silently).
async fn csv_rows(client: &PanelClient, path: &str) -> Vec<csv::StringRecord> {
    let response = client
        .http
        .get(format!("{}{path}", client.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let headers = response.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename="));
    let bytes = response.bytes().await.unwrap();
    let body = bytes
        .strip_prefix(BOM)
        .expect("the panel's CSV starts with a BOM, for Excel");
    let mut reader = csv::Reader::from_reader(body);
    reader.records().map(Result::unwrap).collect()
}

#[tokio::test]
async fn history_export_follows_the_filters_and_recipients_download_from_the_message_page() {
    let app = TestApp::spawn_without_dispatcher().await;
    app.create_user("bob", "Bob-pass-2026!").await;
    let bob = app.panel_login("bob", "Bob-pass-2026!").await;
    let typhoon = message_id(
        bob.compose(
            "颱風 typhoon, \"signal 8\"",
            "9123 4567\n6123 4567",
            None,
            None,
        )
        .await
        .location(),
    );
    let other = message_id(
        bob.compose("lunch menu", "9123 4567", None, None)
            .await
            .location(),
    );
    let admin = app.panel_login("SMSadmin", ADMIN_PASSWORD).await;
    let admins = message_id(
        admin
            .compose("admin typhoon note", "5123 4567", None, None)
            .await
            .location(),
    );

    // The history page links the export with the filters it shows.
    let page = bob.get("/history?q=typhoon&phone=91234567").await;
    let href = link(&page, "export-csv");
    assert_eq!(href, "/history/export.csv?q=typhoon&phone=91234567");
    let rows = csv_rows(&bob, &href).await;
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, [typhoon.to_string()]);
    assert_eq!(&rows[0][6], "颱風 typhoon, \"signal 8\"");
    // Unfiltered: all of bob's own, none of the admin's.
    let rows = csv_rows(&bob, &link(&bob.get("/history").await, "export-csv")).await;
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, [other.to_string(), typhoon.to_string()]);
    // Admins export everyone's matches.
    let rows = csv_rows(&admin, "/history/export.csv?q=typhoon").await;
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, [admins.to_string(), typhoon.to_string()]);
    assert_eq!(
        bob.get("/history/export.csv?phone=12ab").await.status,
        StatusCode::BAD_REQUEST
    );

    // The message page's button, for its owner and for an admin; 404 for anyone else.
    let page = bob.get(&format!("/history/{typhoon}")).await;
    assert!(
        page.body.contains("Download recipients (CSV)"),
        "{}",
        page.body
    );
    let href = link(&page, "recipients-csv");
    assert_eq!(href, format!("/history/{typhoon}/recipients.csv"));
    for client in [&bob, &admin] {
        let rows = csv_rows(client, &href).await;
        let numbers: Vec<&str> = rows.iter().map(|r| &r[1]).collect();
        assert_eq!(numbers, ["+85291234567", "+85261234567"]);
    }
    assert_eq!(
        bob.get(&format!("/history/{admins}/recipients.csv"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    app.teardown().await;
}
