//! The JSON API's history filters (`GET /api/sms?status=&from=&to=&q=&recipient=`) and its
//! streamed CSV exports (`GET /api/sms/export.csv`, `GET /api/sms/{id}/recipients.csv`),
//! issue #16 items 5 and 6.

use reqwest::{header, StatusCode};
use serde_json::Value;
use smsgate_tests::app::{assert_error, TestApp};

/// A stack without a dispatcher: nothing here needs sending, and recipients keep the
/// statuses the tests give them.
async fn spawn() -> TestApp {
    TestApp::spawn_without_dispatcher().await
}

/// Sets what a test filters on, straight in the database (the API stamps `now()`).
async fn stamp(app: &TestApp, id: i64, created_at: &str, status: &str) {
    sqlx::query("UPDATE messages SET created_at = $2::timestamptz, status = $3 WHERE id = $1")
        .bind(id)
        .bind(created_at)
        .bind(status)
        .execute(&app.db)
        .await
        .unwrap();
}

async fn bulk_as(app: &TestApp, token: &str, recipients: &[&str], content: &str) -> i64 {
    let (status, body) = app
        .request(
            reqwest::Method::POST,
            "/api/sms/send-bulk",
            Some(token),
            Some(serde_json::json!({"recipients": recipients, "content": content})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

/// `GET /api/sms?{query}` as `token`: the listed ids, and the whole `data`.
async fn list(app: &TestApp, token: &str, query: &str) -> (Vec<i64>, Value) {
    let (status, body) = app
        .request(
            reqwest::Method::GET,
            &format!("/api/sms?{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let ids = body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    (ids, body["data"].clone())
}

/// A CSV download: status, headers and body.
async fn download(
    app: &TestApp,
    token: &str,
    path: &str,
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let response = app
        .http
        .get(app.url(path))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// The records of a CSV body with its header row, as a spreadsheet reads them.
fn records(body: &[u8]) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_reader(body);
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader.records().map(Result::unwrap).collect();
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// Alice's four messages, each with what one filter picks out, and one of the admin's.
struct Seeded {
    alice: String,
    typhoon_nov1: i64,
    meeting_nov2: i64,
    typhoon_nov3: i64,
    admins: i64,
}

async fn seed(app: &TestApp) -> Seeded {
    let (_, alice) = app.create_user("alice", "Alice-pass-2026").await;
    let typhoon_nov1 = app
        .send_sms_as(&alice, "9123 4567", "Typhoon signal 8: offices close")
        .await;
    stamp(app, typhoon_nov1, "2026-11-01T10:00:00Z", "sent").await;
    let meeting_nov2 = app
        .send_sms_as(&alice, "6123 4567", "Meeting moved to 3pm")
        .await;
    // The last instant of 2 November (UTC) is still on the 2nd.
    stamp(app, meeting_nov2, "2026-11-02T23:59:59.999Z", "failed").await;
    let typhoon_nov3 = bulk_as(
        app,
        &alice,
        &["+85291234567", "6123 4568"],
        "typhoon over, offices open",
    )
    .await;
    stamp(app, typhoon_nov3, "2026-11-03T00:00:00Z", "partial").await;
    let admins = app
        .send_sms("9123 4567", "typhoon: admin's own notice")
        .await;
    stamp(app, admins, "2026-11-02T12:00:00Z", "sent").await;
    Seeded {
        alice,
        typhoon_nov1,
        meeting_nov2,
        typhoon_nov3,
        admins,
    }
}

#[tokio::test]
async fn list_filters_work_alone_and_combined_on_the_callers_own_messages() {
    let app = spawn().await;
    let s = seed(&app).await;
    let (nov1, nov2, nov3) = (s.typhoon_nov1, s.meeting_nov2, s.typhoon_nov3);

    let cases: &[(&str, Vec<i64>)] = &[
        ("", vec![nov3, nov2, nov1]),
        ("status=failed", vec![nov2]),
        ("status=sent", vec![nov1]),
        ("from=2026-11-02&to=2026-11-02", vec![nov2]),
        ("from=2026-11-02", vec![nov3, nov2]),
        ("to=2026-11-02", vec![nov2, nov1]),
        ("q=typhoon", vec![nov3, nov1]),
        ("q=TYPHOON%20signal", vec![nov1]),
        // LIKE metacharacters are literal.
        ("q=%25", vec![]),
        ("recipient=9123%204567", vec![nov3, nov1]),
        ("recipient=91234567", vec![nov3, nov1]),
        ("recipient=%2B85291234567", vec![nov3, nov1]),
        ("recipient=61234568", vec![nov3]),
        ("q=typhoon&recipient=91234567&from=2026-11-02", vec![nov3]),
        ("q=typhoon&status=partial&to=2026-11-03", vec![nov3]),
        ("q=typhoon&status=sent&from=2026-11-02", vec![]),
        // Blank values are no filter.
        ("status=&from=&to=&q=&recipient=", vec![nov3, nov2, nov1]),
    ];
    for (query, expected) in cases {
        let (ids, data) = list(&app, &s.alice, query).await;
        assert_eq!(&ids, expected, "{query}");
        assert_eq!(data["total"], expected.len(), "{query}");
    }

    // Numbered pages over a filter: the shape the replaced panel's clients read.
    let (ids, data) = list(&app, &s.alice, "q=typhoon&per_page=1&page=2").await;
    assert_eq!(ids, vec![nov1]);
    assert_eq!(
        (
            &data["total"],
            &data["pages"],
            &data["current_page"],
            &data["per_page"]
        ),
        (
            &Value::from(2),
            &Value::from(2),
            &Value::from(2),
            &Value::from(1)
        )
    );
    assert_eq!(
        data["messages"][0]["content"],
        "Typhoon signal 8: offices close"
    );
    assert_eq!(data["messages"][0]["status"], "sent");

    // An admin's list is their own, filters included.
    let (ids, _) = list(&app, &app.token, "q=typhoon").await;
    assert_eq!(ids, vec![s.admins]);
    app.teardown().await;
}

#[tokio::test]
async fn bad_filter_values_are_400_on_the_list_and_the_export() {
    let app = spawn().await;
    let cases = [
        ("status=delivered-ish", "INVALID_STATUS", "delivered-ish"),
        ("from=2026-13-01", "INVALID_DATE", "from"),
        ("to=01%2F12%2F2026", "INVALID_DATE", "YYYY-MM-DD"),
        (
            "from=2026-12-02&to=2026-12-01",
            "INVALID_DATE_RANGE",
            "after",
        ),
        ("recipient=12ab", "INVALID_PHONE_NUMBER", "recipient"),
    ];
    for (query, code, says) in cases {
        for path in ["/api/sms", "/api/sms/export.csv"] {
            let (status, body) = app.get(&format!("{path}?{query}")).await;
            let message = assert_error((status, &body), StatusCode::BAD_REQUEST, code);
            assert!(message.contains(says), "{path}?{query}: {message}");
        }
    }
    app.teardown().await;
}

#[tokio::test]
async fn the_history_export_is_the_filtered_list_as_csv_with_text_kept_intact() {
    let app = spawn().await;
    let s = seed(&app).await;
    let tricky = "=HYPERLINK(\"http://x\"), 颱風 \"八號\"\nsecond line, still typhoon";
    let tricky_id = app.send_sms_as(&s.alice, "5123 4567", tricky).await;

    let (status, headers, body) = download(
        &app,
        &s.alice,
        "/api/sms/export.csv?q=typhoon&recipient=91234567",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"messages.csv\""
    );
    assert!(headers.get(header::CONTENT_LENGTH).is_none(), "{headers:?}");
    assert!(
        !body.starts_with(b"\xEF\xBB\xBF"),
        "the API's CSV has no BOM"
    );
    let (header, rows) = records(&body);
    assert_eq!(
        header[..7],
        [
            "id",
            "created_at",
            "username",
            "status",
            "priority",
            "route",
            "content"
        ]
    );
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(
        ids,
        [s.typhoon_nov3.to_string(), s.typhoon_nov1.to_string()]
    );
    let nov1 = &rows[1];
    assert_eq!(
        &nov1[column(&header, "created_at")],
        "2026-11-01T10:00:00.000Z"
    );
    assert_eq!(&nov1[column(&header, "username")], "alice");
    assert_eq!(&nov1[column(&header, "status")], "sent");
    assert_eq!(
        &nov1[column(&header, "content")],
        "Typhoon signal 8: offices close"
    );
    assert_eq!(&rows[0][column(&header, "recipients")], "2");
    assert_eq!(&rows[0][column(&header, "pending")], "2");

    // Commas, quotes, a newline and Chinese survive; the leading `=` is neutralised.
    let (_, _, body) = download(&app, &s.alice, "/api/sms/export.csv?q=%E9%A2%B1%E9%A2%A8").await;
    let (header, rows) = records(&body);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], tricky_id.to_string());
    assert_eq!(rows[0][column(&header, "content")], format!("'{tricky}"));

    // Without filters: all of the caller's own messages, none of anyone else's.
    let (_, _, body) = download(&app, &app.token, "/api/sms/export.csv").await;
    let (_, rows) = records(&body);
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, [s.admins.to_string()]);
    app.teardown().await;
}

#[tokio::test]
async fn the_recipients_export_has_every_field_and_only_the_owner_gets_it() {
    let app = spawn().await;
    let s = seed(&app).await;
    let id = s.typhoon_nov3;
    sqlx::query(
        "UPDATE recipients SET status = 'failed', attempts = 3,
                last_error = '-ERR 401, \"rejected\"', gateway_response = '@gateway said no'
         WHERE message_id = $1 AND phone = '+85261234568'",
    )
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();

    let path = format!("/api/sms/{id}/recipients.csv");
    let (status, headers, body) = download(&app, &s.alice, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"message-{id}-recipients.csv\"")
    );
    let (header, rows) = records(&body);
    assert_eq!(
        header,
        [
            "id",
            "number",
            "status",
            "attempts",
            "error",
            "gateway_response",
            "sim_card_id",
            "created_at",
            "sent_at",
            "delivered_at",
            "updated_at"
        ]
    );
    assert_eq!(rows.len(), 2);
    // Numbers stay as stored (E.164, readable), in id order: the order they were given.
    assert_eq!(&rows[0][1], "+85291234567");
    assert_eq!(
        (&rows[0][2], &rows[0][3], &rows[0][4]),
        ("pending", "0", "")
    );
    assert_eq!(&rows[1][1], "+85261234568");
    assert_eq!((&rows[1][2], &rows[1][3]), ("failed", "3"));
    assert_eq!(&rows[1][4], "'-ERR 401, \"rejected\"");
    assert_eq!(&rows[1][5], "'@gateway said no");

    // Someone else's message, even for an admin, is as missing as a message that is not.
    let (_, bob) = app.create_user("bob", "Bob-pass-2026!").await;
    for token in [&bob, &app.token] {
        let (status, body) = app
            .request(reqwest::Method::GET, &path, Some(token), None)
            .await;
        assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let (status, body) = app
        .request(
            reqwest::Method::GET,
            "/api/sms/999999999/recipients.csv",
            Some(&s.alice),
            None,
        )
        .await;
    assert_error((status, &body), StatusCode::NOT_FOUND, "NOT_FOUND");
    app.teardown().await;
}

/// 100,000 recipients, seeded in one statement (a send-bulk of that size would publish as
/// many jobs to the shared broker for nothing here), exported and counted.
#[tokio::test]
async fn a_100000_recipient_bulk_is_exported_whole_in_id_order() {
    const N: i64 = 100_000;
    let app = spawn().await;
    let (alice_id, alice) = app.create_user("alice", "Alice-pass-2026").await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (user_id, content, encoding, segments, status, total_count,
                               sent_count, failed_count)
         VALUES ($1, 'campaign', 'gsm7', 1, 'partial', $2, $2 - $2 / 1000, $2 / 1000)
         RETURNING id",
    )
    .bind(alice_id)
    .bind(N as i32)
    .fetch_one(&app.db)
    .await
    .unwrap();
    // Every 1,000th failed with an error a spreadsheet would run.
    sqlx::query(
        "INSERT INTO recipients (message_id, phone, status, attempts, last_error, sent_at)
         SELECT $1, '+8529' || lpad(g::text, 7, '0'),
                CASE WHEN g % 1000 = 0 THEN 'failed' ELSE 'sent' END, 1,
                CASE WHEN g % 1000 = 0 THEN '=ERR ' || g END,
                CASE WHEN g % 1000 = 0 THEN NULL ELSE '2026-12-01T08:00:00Z'::timestamptz END
         FROM generate_series(1, $2) g",
    )
    .bind(id)
    .bind(N)
    .execute(&app.db)
    .await
    .unwrap();

    let (status, headers, body) =
        download(&app, &alice, &format!("/api/sms/{id}/recipients.csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::TRANSFER_ENCODING], "chunked");
    let (header, rows) = records(&body);
    assert_eq!(rows.len(), N as usize);
    let number = column(&header, "number");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[number], format!("+8529{:07}", i + 1), "row {i}");
    }
    let ids: Vec<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids ascend, none twice"
    );
    let (status_at, error_at) = (column(&header, "status"), column(&header, "error"));
    let row = &rows[999];
    assert_eq!((&row[status_at], &row[error_at]), ("failed", "'=ERR 1000"));
    assert_eq!(&row[column(&header, "sent_at")], "");
    let row = &rows[N as usize - 2];
    assert_eq!((&row[status_at], &row[error_at]), ("sent", ""));
    assert_eq!(&row[column(&header, "sent_at")], "2026-12-01T08:00:00.000Z");
    let failed = rows.iter().filter(|r| &r[status_at] == "failed").count();
    assert_eq!(failed, (N / 1000) as usize);
    app.teardown().await;
}
