//! A real Chromium, driven through Debian's `chromedriver` (WebDriver, with
//! the fantoccini crate), against a real `serve` on real PostgreSQL.
//!
//! Where Chromium is not installed the browser tests say so and pass,
//! unless `SHARELEDGER_REQUIRE_BROWSER` is set (CI sets it, after
//! installing `chromium` and `chromium-driver`): then they fail.
//! Screenshots go to `SHARELEDGER_SCREENSHOTS` (a directory), else to the
//! test target's temporary directory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The longest a page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

pub struct Browser {
    driver: Child,
    pub client: Client,
    base: String,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The browser's console messages (Chromium's log, through chromedriver).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// A headless Chromium at `base`, or `None` where none is installed
    /// and none is required.
    pub async fn start(base: &str) -> Option<Browser> {
        let driver_path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        if !std::path::Path::new(&driver_path).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            assert!(
                std::env::var_os("SHARELEDGER_REQUIRE_BROWSER").is_none(),
                "the browser tests need Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "SKIPPED: no {CHROMIUM} or {driver_path}: the console's browser tests did not run \
                 (apt-get install chromium chromium-driver; CI requires them)"
            );
            return None;
        }
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let profile = tempfile_dir();
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }))
        .expect("capabilities");
        // chromedriver listens a moment after it starts.
        let mut last_error = None;
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => {
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let client = client.unwrap_or_else(|| panic!("chromedriver answers: {last_error:?}"));
        let shots = std::env::var_os("SHARELEDGER_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console"));
        std::fs::create_dir_all(&shots).expect("the screenshots' directory");
        Some(Browser {
            driver,
            client,
            base: base.trim_end_matches('/').to_owned(),
            shots,
        })
    }

    pub async fn go(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("the page loads");
        self.no_console_errors(path).await;
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.client
            .execute("return document.body.innerText", vec![])
            .await
            .expect("the page's text")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The visible text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element.text().await.expect("its text"),
            Err(e) => panic!("{css} shows: {e}; the page says:\n{}", self.text().await),
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("a search")
            .is_empty()
    }

    /// Clicks what `css` finds and waits for the next page to load.
    pub async fn submit(&self, css: &str) {
        self.client
            .execute("document.body.dataset.left = 'yes'", vec![])
            .await
            .expect("the page is marked");
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} is on the page: {e}"))
            .click()
            .await
            .expect("a click");
        self.wait_for_new_page().await;
    }

    /// Waits until the marked page has been replaced and has loaded.
    pub async fn wait_for_new_page(&self) {
        self.until("the next page loads", |b| async move {
            b.client
                .execute(
                    "return document.readyState === 'complete' && !document.body.dataset.left",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        })
        .await;
        let path = self
            .client
            .current_url()
            .await
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        self.no_console_errors(&path).await;
    }

    /// Types into a field.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} is on the page: {e}"));
        field.clear().await.expect("cleared");
        field.send_keys(text).await.expect("typed");
    }

    /// Sets a field's value at once (long text such as a CSV file).
    pub async fn set_value(&self, css: &str, text: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).value = arguments[1]",
                vec![json!(css), json!(text)],
            )
            .await
            .expect("the value is set");
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} is on the page: {e}"))
            .click()
            .await
            .expect("a click");
    }

    /// Polls `condition` until it holds, at most [`PATIENCE`].
    pub async fn until<'a, F, Fut>(&'a self, what: &str, mut condition: F)
    where
        F: FnMut(&'a Browser) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !condition(self).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {PATIENCE:?}; the page says:\n{}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn sign_in(&self, token: &str) {
        self.go("/sign-in").await;
        self.fill("#token", token).await;
        self.submit("form[action='/sign-in'] button[type=submit]")
            .await;
    }

    pub async fn sign_out(&self) {
        self.submit("form[action='/sign-out'] button").await;
        assert!(self.text().await.contains("You are signed out."));
    }

    /// Saves a screenshot of the whole page as `<name>.png`.
    pub async fn shot(&self, name: &str) {
        let (w, _) = self.client.get_window_size().await.expect("a size");
        let height = self
            .client
            // The window's own frame is not page: added to the page's height.
            .execute(
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(1000)
            .clamp(600, 4000);
        self.client
            .set_window_size(w as u32, height as u32)
            .await
            .expect("resized");
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("saved");
        self.client
            .set_window_size(w as u32, 1000)
            .await
            .expect("resized back");
    }

    /// Fails on any error the page logged (a script error, a failed load).
    pub async fn no_console_errors(&self, page: &str) {
        let Ok(log) = self.client.issue_cmd(BrowserLog).await else {
            return;
        };
        let errors: Vec<String> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["level"] == "SEVERE")
            // A refusal's own status (401, 403, 404) is the page's answer,
            // not a fault of the page: Chromium logs it all the same.
            .filter(|m| {
                let message = m["message"].as_str().unwrap_or_default();
                !(message.contains(&format!("{}{page}", self.base))
                    || message.contains(&format!(
                        "{}{} ",
                        self.base,
                        page.split('?').next().unwrap_or(page)
                    )))
                    || !message.contains("the server responded with a status of 4")
            })
            .map(|m| m["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            errors.is_empty(),
            "the browser logged errors on {page}: {errors:#?}"
        );
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shareledger-chromium-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a profile directory");
    dir
}
