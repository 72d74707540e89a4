//! What may be shown of a URL. Image and webhook URLs can carry secrets — a password in
//! `user:password@`, a presigned URL's `X-Amz-Signature`, a token in a query — and so can
//! connection strings. Every span, log line, stored error and job event that shows a URL
//! shows [`url`]'s rendering of it: no userinfo, every query value replaced by
//! `REDACTED` (names kept, so the shape stays readable), no fragment.

/// The replacement of a redacted value.
pub const REDACTED: &str = "REDACTED";

/// `raw` with userinfo removed and query values and fragment redacted. Text that is not
/// an absolute URL is not shown at all.
pub fn url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw.trim()) else {
        return "[not a URL]".to_string();
    };
    // Both fail only for URLs that cannot have credentials (e.g. `mailto:`).
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_some() {
        let names: Vec<String> = url
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        if names.is_empty() {
            url.set_query(Some(REDACTED));
        } else {
            url.query_pairs_mut()
                .clear()
                .extend_pairs(names.iter().map(|name| (name.as_str(), REDACTED)));
        }
    }
    if url.fragment().is_some() {
        url.set_fragment(Some(REDACTED));
    }
    url.to_string()
}

/// `text` with every `http(s)://`, `postgres(ql)://` and `nats://` URL in it redacted by
/// [`url`] — for error messages that quote a URL.
pub fn urls_in(text: &str) -> String {
    const SCHEMES: [&str; 6] = [
        "https://",
        "http://",
        "postgresql://",
        "postgres://",
        "nats://",
        "tls://",
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, scheme)) = SCHEMES
        .iter()
        .filter_map(|s| rest.find(s).map(|at| (at, *s)))
        .min_by_key(|(at, _)| *at)
    {
        out.push_str(&rest[..at]);
        let end = rest[at + scheme.len()..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | ','))
            .map_or(rest.len(), |n| at + scheme.len() + n);
        out.push_str(&url(&rest[at..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_query_values_and_fragments_are_redacted() {
        assert_eq!(
            url("https://alice:s3cret@img.example/a/b.jpg?X-Amz-Signature=abc&size=2#tok"),
            "https://img.example/a/b.jpg?X-Amz-Signature=REDACTED&size=REDACTED#REDACTED"
        );
        assert_eq!(
            url("http://img.example/a.jpg"),
            "http://img.example/a.jpg",
            "a URL without secrets is shown as it is"
        );
        assert_eq!(
            url("https://h.example/?token"),
            "https://h.example/?token=REDACTED"
        );
        assert_eq!(url("https://h.example/a@b"), "https://h.example/a@b");
        assert_eq!(url("not a url"), "[not a URL]");
    }

    #[test]
    fn connection_strings_lose_their_credentials() {
        assert_eq!(
            url("postgres://foodseg:pw@db:5432/foodseg?sslmode=require"),
            "postgres://db:5432/foodseg?sslmode=REDACTED"
        );
        assert_eq!(url("nats://user:pw@nats:4222"), "nats://nats:4222");
    }

    #[test]
    fn urls_inside_text_are_redacted() {
        assert_eq!(
            urls_in("error sending request for url (https://u:p@h.example/x?sig=1): timed out"),
            "error sending request for url (https://h.example/x?sig=REDACTED): timed out"
        );
        assert_eq!(
            urls_in("cannot connect to NATS at nats://a:b@n:4222, then http://ok.example/"),
            "cannot connect to NATS at nats://n:4222, then http://ok.example/"
        );
        assert_eq!(urls_in("no url here"), "no url here");
    }
}
