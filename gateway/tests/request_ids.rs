//! Request ids through a real server: a caller's `x-request-id` comes back
//! on the answer and in its problem body, a missing or unusable one is
//! replaced by a new UUID, and the request's log lines carry it.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{Harness, Reply};
use uuid::Uuid;

fn header(reply: &Reply) -> &str {
    reply
        .headers
        .get("x-request-id")
        .expect("an x-request-id header")
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_callers_request_id_comes_back_in_the_header_and_the_problem() {
    let harness = Harness::start().await;
    let h = &harness;
    let id = "caller-7f3a.9:Z_~";
    // No token: a 401 problem.
    let reply = h
        .get_with("/v1/whoami", &[("x-request-id", id.to_owned())])
        .await;
    reply.assert_problem(401, "unauthenticated");
    assert_eq!(header(&reply), id);
    assert_eq!(reply.json["request_id"], id);
    // Problems from the router itself (no route, wrong method) and from a
    // handler with a token have it too.
    for (method, path, code, status) in [
        (reqwest::Method::GET, "/v1/nowhere", "no_route", 404),
        (
            reqwest::Method::DELETE,
            "/v1/whoami",
            "method_not_allowed",
            405,
        ),
    ] {
        let reply = h
            .request(method, path, &[("x-request-id", id.to_owned())])
            .await;
        reply.assert_problem(status, code);
        assert_eq!(reply.json["request_id"], id);
    }
    let reply = h
        .get_with(
            "/v1/access/check?target_type=scorecard&target_id=nope&action=view",
            &[
                ("authorization", format!("Bearer {}", h.operator)),
                ("x-request-id", id.to_owned()),
            ],
        )
        .await;
    reply.assert_problem(400, "invalid_query");
    assert_eq!(reply.json["request_id"], id);
    // A success carries it back in the header.
    let reply = h
        .get_with("/health", &[("x-request-id", id.to_owned())])
        .await;
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(header(&reply), id);
    harness.shutdown().await;
}

#[tokio::test]
async fn a_request_without_an_id_gets_a_new_uuid_in_the_header_and_the_problem() {
    let harness = Harness::start().await;
    let h = &harness;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let reply = h.get_with("/v1/whoami", &[]).await;
        reply.assert_problem(401, "unauthenticated");
        let id: Uuid = header(&reply).parse().expect("a UUID");
        assert_eq!(reply.json["request_id"], id.to_string());
        seen.push(id);
    }
    assert_ne!(seen[0], seen[1], "each request has its own id");
    let reply = h.get_with("/health", &[]).await;
    assert!(header(&reply).parse::<Uuid>().is_ok(), "{reply:#?}");
    harness.shutdown().await;
}

#[tokio::test]
async fn an_unusable_request_id_is_replaced() {
    let harness = Harness::start().await;
    let h = &harness;
    for bad in ["has spaces", &"x".repeat(129)] {
        let reply = h
            .get_with("/v1/whoami", &[("x-request-id", bad.to_owned())])
            .await;
        reply.assert_problem(401, "unauthenticated");
        assert!(
            header(&reply).parse::<Uuid>().is_ok(),
            "{bad:?}: {reply:#?}"
        );
    }
    // Two ids in one request: neither is kept.
    let reply = h
        .get_with(
            "/v1/whoami",
            &[
                ("x-request-id", "one".to_owned()),
                ("x-request-id", "two".to_owned()),
            ],
        )
        .await;
    assert!(header(&reply).parse::<Uuid>().is_ok(), "{reply:#?}");
    assert_eq!(reply.json["request_id"], header(&reply));
    harness.shutdown().await;
}

/// What the process logs, for the test below: one subscriber for the whole
/// test binary, writing into memory.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info,sqlx=warn")
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .init();
        logs
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_request_span_records_the_id() {
    let logs = logs();
    let harness = Harness::start().await;
    let h = &harness;
    let id = format!("trace-{}", Uuid::new_v4());
    let reply = h
        .get_with("/v1/whoami", &[("x-request-id", id.clone())])
        .await;
    reply.assert_problem(401, "unauthenticated");
    harness.shutdown().await;
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("request_id={id}")))
        .unwrap_or_else(|| panic!("no log line names {id}:\n{text}"));
    // The line is the request's response log, inside its span.
    assert!(line.contains("uri=/v1/whoami"), "{line}");
    assert!(line.contains("status=401"), "{line}");
}
