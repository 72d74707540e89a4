//! One-line rendering of an error and its sources, for logs and stored `last_error` text.

/// `error: cause: cause…` on one line. A source whose text the line already ends with
/// (an error that prints its own source) is not repeated. URLs quoted anywhere in it are
/// redacted (`foodseg_http::redact`): the line is logged and stored.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    foodseg_http::redact::urls_in(&out)
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot load")]
        Wraps(#[source] std::io::Error),
        #[error("cannot load: {0}")]
        Prints(#[source] std::io::Error),
    }

    #[test]
    fn urls_in_errors_are_redacted() {
        let e = std::io::Error::other("cannot reach https://u:pw@h.example/a?sig=s3");
        assert_eq!(
            error_chain(&e),
            "cannot reach https://h.example/a?sig=REDACTED"
        );
    }

    #[test]
    fn sources_follow_once() {
        let io = || std::io::Error::other("disk gone");
        assert_eq!(error_chain(&Outer::Wraps(io())), "cannot load: disk gone");
        assert_eq!(error_chain(&Outer::Prints(io())), "cannot load: disk gone");
    }
}
