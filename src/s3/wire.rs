//! S3 wire formats: where a request points (host and path), query strings,
//! aws-chunked bodies, XML in and out, and the two date formats.

use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::error::ApiError;

/// The S3 XML namespace every result document declares.
pub const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// S3's limit on a key's length in UTF-8 bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The bucket named by a virtual-host style `Host` header, if any:
/// `bucket.localhost`, `bucket.s3.localhost`, `bucket.s3.amazonaws.com`,
/// `bucket.s3.us-east-1.amazonaws.com`, `bucket.s3.localhost.localstack.cloud`.
/// A port is ignored. Plain `localhost`, `s3.*` and IP addresses name no bucket.
/// Bucket names with dots work too (`my.bucket.localhost`).
pub fn virtual_host_bucket(host: &str) -> Option<String> {
    let host = strip_port(host.trim()).trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let bucket = if let Some(i) = host.find(".s3.") { &host[..i] } else { host.strip_suffix(".localhost")? };
    if bucket.is_empty() || bucket == "localhost" || bucket == "s3" || bucket.parse::<IpAddr>().is_ok() {
        return None;
    }
    Some(bucket.to_string())
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // `[::1]:4566`
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// What a request addresses, percent-decoded. `key` is never empty.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

/// Splits a request into bucket and key: virtual-host style when `host`
/// names a bucket, path style (`/bucket/key`) otherwise.
pub fn parse_target(host: Option<&str>, path: &str) -> Result<Target, ApiError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = match host.and_then(virtual_host_bucket) {
        Some(bucket) => (Some(bucket), path),
        None => {
            let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
            let bucket = if bucket.is_empty() { None } else { Some(decode(bucket)?) };
            (bucket, key)
        }
    };
    let key = if key.is_empty() || bucket.is_none() { None } else { Some(decode(key)?) };
    if let Some(k) = &key
        && k.len() > MAX_KEY_LEN
    {
        return Err(ApiError::KeyTooLong);
    }
    Ok(Target { bucket, key })
}

fn decode(s: &str) -> Result<String, ApiError> {
    percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| ApiError::InvalidUri(s.to_string()))
}

/// A decoded query string. Valueless parameters (`?versioning`) have "".
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut out = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| decode(&s.replace('+', " "));
            out.push((dec(name)?, dec(value)?));
        }
        Ok(Query(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// The first parameter that is one of `names`.
    pub fn first_of<'a>(&self, names: &[&'a str]) -> Option<&'a str> {
        names.iter().copied().find(|n| self.has(n))
    }
}

/// A body with the aws-chunked framing removed, and the trailers that came after it.
#[derive(Debug, PartialEq, Eq)]
pub struct Unchunked {
    pub body: Vec<u8>,
    /// Trailer headers, names lowercased (e.g. `x-amz-checksum-crc32`).
    pub trailers: Vec<(String, String)>,
}

/// Removes aws-chunked framing: `<hex>[;ext]\r\n<data>\r\n ... 0[;ext]\r\n<trailers>\r\n`.
/// Chunk signatures (`;chunk-signature=...`) are not checked: we do not check
/// request signatures at all.
pub fn decode_aws_chunked(input: &[u8]) -> Result<Unchunked, &'static str> {
    fn line_end(input: &[u8], from: usize) -> Option<usize> {
        input.get(from..)?.windows(2).position(|w| w == b"\r\n").map(|i| from + i)
    }
    let mut body = Vec::with_capacity(input.len());
    let mut pos = 0;
    loop {
        let end = line_end(input, pos).ok_or("chunk header is not terminated")?;
        let header = std::str::from_utf8(&input[pos..end]).map_err(|_| "chunk header is not text")?;
        pos = end + 2;
        let size_hex = header.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "chunk size is not hex")?;
        if size == 0 {
            break;
        }
        let data_end = pos.checked_add(size).ok_or("chunk size is too large")?;
        let data = input.get(pos..data_end).ok_or("chunk is shorter than its size")?;
        body.extend_from_slice(data);
        if input.get(data_end..data_end + 2) != Some(b"\r\n".as_slice()) {
            return Err("chunk data is not followed by CRLF");
        }
        pos = data_end + 2;
    }
    let mut trailers = Vec::new();
    while pos < input.len() {
        let end = line_end(input, pos).unwrap_or(input.len());
        let line = String::from_utf8_lossy(&input[pos..end]);
        pos = end + 2;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or("trailer is not name:value")?;
        trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Unchunked { body, trailers })
}

pub use crate::aws::xml::escape;

/// How deep a request document may nest. S3's documents need five levels; the limit keeps
/// a hostile body from building (and recursively dropping) a tree a million levels deep.
const MAX_XML_DEPTH: usize = 32;

/// One element of an XML request body, read with quick-xml: its local name (namespace
/// prefix dropped), its own text (entity and character references resolved, CDATA kept
/// verbatim, comments and processing instructions dropped) and its child elements in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Reads a whole document and returns its root element. A document that is not
    /// well-formed (unclosed or mismatched tags, a bad reference, text or a second element
    /// outside the root, nesting deeper than `MAX_XML_DEPTH`) is `MalformedXml`.
    pub fn parse(xml: &str) -> Result<Element, ApiError> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut open: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let event = reader.read_event().map_err(|_| ApiError::MalformedXml)?;
            match event {
                Event::Start(e) => {
                    let element = new_element(&e, &open, &root)?;
                    open.push(element);
                }
                Event::Empty(e) => {
                    let element = new_element(&e, &open, &root)?;
                    attach(&mut open, &mut root, element);
                }
                Event::End(_) => {
                    let element = open.pop().ok_or(ApiError::MalformedXml)?;
                    attach(&mut open, &mut root, element);
                }
                Event::Text(t) => push_text(&mut open, &t.xml10_content())?,
                Event::CData(c) => push_text(&mut open, &c.into_inner())?,
                Event::GeneralRef(r) => {
                    let c = match r.resolve_char_ref().map_err(|_| ApiError::MalformedXml)? {
                        Some(c) => c.to_string(),
                        None => {
                            quick_xml::escape::resolve_predefined_entity(&r).ok_or(ApiError::MalformedXml)?.to_string()
                        }
                    };
                    push_text(&mut open, &c)?;
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
                Event::Eof => break,
            }
        }
        match (root, open.is_empty()) {
            (Some(root), true) => Ok(root),
            _ => Err(ApiError::MalformedXml),
        }
    }

    /// The direct children named `name`, in document order.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first direct child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The trimmed text of the first direct child named `name`.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_string())
    }
}

/// The element `<tag ...>` opens; refused when it would be a second root or nest too deep.
fn new_element(
    start: &quick_xml::events::BytesStart<'_>,
    open: &[Element],
    root: &Option<Element>,
) -> Result<Element, ApiError> {
    if root.is_some() || open.len() >= MAX_XML_DEPTH {
        return Err(ApiError::MalformedXml);
    }
    Ok(Element { name: start.local_name().as_ref().to_string(), ..Element::default() })
}

/// Hangs a finished element under its parent, or makes it the root.
fn attach(open: &mut [Element], root: &mut Option<Element>, element: Element) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Adds text to the element being read; outside the root only whitespace is allowed.
fn push_text(open: &mut [Element], text: &str) -> Result<(), ApiError> {
    match open.last_mut() {
        Some(element) => element.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(ApiError::MalformedXml),
    }
    Ok(())
}

/// Builds an S3 result document by hand.
pub struct Xml {
    out: String,
}

impl Xml {
    /// Starts a document with `root` carrying the S3 namespace.
    pub fn new(root: &str) -> Xml {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(out, "<{root} xmlns=\"{XMLNS}\">");
        Xml { out }
    }

    pub fn open(&mut self, tag: &str) -> &mut Xml {
        let _ = write!(self.out, "<{tag}>");
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Xml {
        let _ = write!(self.out, "</{tag}>");
        self
    }

    /// `<tag>text</tag>`, text escaped.
    pub fn elem(&mut self, tag: &str, text: impl AsRef<str>) -> &mut Xml {
        let _ = write!(self.out, "<{tag}>{}</{tag}>", escape(text.as_ref()));
        self
    }

    pub fn finish(mut self, root: &str) -> String {
        let _ = write!(self.out, "</{root}>");
        self.out
    }
}

/// Characters left alone by `encoding-type=url`: unreserved ones and `/`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// Encodes a key for a listing requested with `encoding-type=url`
/// (botocore asks for it by default and decodes with `unquote_plus`).
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_ENCODE).to_string()
}

fn datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `Wed, 21 Oct 2015 07:28:00 GMT`, as in `Last-Modified`.
pub fn http_date(ms: i64) -> String {
    datetime(ms).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `2015-10-21T07:28:00.000Z`, as in listings.
pub fn iso_date(ms: i64) -> String {
    datetime(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses an HTTP date (`If-Modified-Since`) to epoch milliseconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc2822(s.trim()).ok().map(|d| d.timestamp_millis())
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_host_forms() {
        let b = |h| virtual_host_bucket(h);
        assert_eq!(b("mybucket.localhost:4566").as_deref(), Some("mybucket"));
        assert_eq!(b("mybucket.localhost").as_deref(), Some("mybucket"));
        assert_eq!(b("mybucket.s3.localhost:4566").as_deref(), Some("mybucket"));
        assert_eq!(b("mybucket.s3.amazonaws.com").as_deref(), Some("mybucket"));
        assert_eq!(b("mybucket.s3.us-east-1.amazonaws.com").as_deref(), Some("mybucket"));
        assert_eq!(b("mybucket.s3.localhost.localstack.cloud:4566").as_deref(), Some("mybucket"));
        assert_eq!(b("my.dotted.bucket.localhost:4566").as_deref(), Some("my.dotted.bucket"));
        assert_eq!(b("MyBucket.LOCALHOST").as_deref(), Some("mybucket"));
        assert_eq!(b("localhost:4566"), None);
        assert_eq!(b("localhost"), None);
        assert_eq!(b("s3.localhost:4566"), None);
        assert_eq!(b("s3.amazonaws.com"), None);
        assert_eq!(b("s3.us-east-1.amazonaws.com"), None);
        assert_eq!(b("127.0.0.1:4566"), None);
        assert_eq!(b("10.0.0.1.localhost"), None);
        assert_eq!(b("[::1]:4566"), None);
        assert_eq!(b("lambda.us-east-1.amazonaws.com"), None);
        assert_eq!(b("host.docker.internal:4566"), None);
    }

    #[test]
    fn path_style_targets() {
        let t = |p| parse_target(Some("127.0.0.1:4566"), p).unwrap();
        assert_eq!(t("/"), Target { bucket: None, key: None });
        assert_eq!(t("/b"), Target { bucket: Some("b".into()), key: None });
        assert_eq!(t("/b/"), Target { bucket: Some("b".into()), key: None });
        assert_eq!(t("/b/k"), Target { bucket: Some("b".into()), key: Some("k".into()) });
        assert_eq!(t("/b/a/b//c/"), Target { bucket: Some("b".into()), key: Some("a/b//c/".into()) });
        assert_eq!(
            t("/b/sp%20ace%2Bplus+%E2%9C%93%2Fslash"),
            Target { bucket: Some("b".into()), key: Some("sp ace+plus+\u{2713}/slash".into()) }
        );
    }

    #[test]
    fn virtual_host_targets() {
        let t = |p| parse_target(Some("bkt.localhost:4566"), p).unwrap();
        assert_eq!(t("/"), Target { bucket: Some("bkt".into()), key: None });
        assert_eq!(t("/a/b.txt"), Target { bucket: Some("bkt".into()), key: Some("a/b.txt".into()) });
    }

    #[test]
    fn bad_targets() {
        let long = format!("/b/{}", "k".repeat(MAX_KEY_LEN + 1));
        assert!(matches!(parse_target(None, &long), Err(ApiError::KeyTooLong)));
        let ok = format!("/b/{}", "k".repeat(MAX_KEY_LEN));
        assert!(parse_target(None, &ok).is_ok());
        assert!(matches!(parse_target(None, "/b/%FF%FE"), Err(ApiError::InvalidUri(_))));
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some("list-type=2&prefix=a%2Fb+c&delete&x-id=GetObject")).unwrap();
        assert_eq!(q.get("list-type"), Some("2"));
        assert_eq!(q.get("prefix"), Some("a/b c"));
        assert!(q.has("delete"));
        assert_eq!(q.get("delete"), Some(""));
        assert_eq!(q.get("marker"), None);
        assert_eq!(q.first_of(&["versioning", "delete"]), Some("delete"));
        assert!(Query::parse(None).unwrap().get("a").is_none());
    }

    #[test]
    fn aws_chunked_unsigned_with_trailer() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let u = decode_aws_chunked(body).unwrap();
        assert_eq!(u.body, b"hello world");
        assert_eq!(u.trailers, vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())]);
    }

    #[test]
    fn aws_chunked_signed() {
        let sig = "chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
        let body = format!("a;{sig}\r\n0123456789\r\n0;{sig}\r\n\r\n");
        let u = decode_aws_chunked(body.as_bytes()).unwrap();
        assert_eq!(u.body, b"0123456789");
        assert!(u.trailers.is_empty());
        // Binary data containing CRLF inside a chunk.
        let u = decode_aws_chunked(b"4\r\n\r\n\r\n\r\n0\r\n").unwrap();
        assert_eq!(u.body, b"\r\n\r\n");
    }

    #[test]
    fn aws_chunked_malformed() {
        assert!(decode_aws_chunked(b"zz\r\nhello\r\n0\r\n\r\n").is_err());
        assert!(decode_aws_chunked(b"10\r\nshort\r\n0\r\n\r\n").is_err());
        assert!(decode_aws_chunked(b"5\r\nhelloXX0\r\n\r\n").is_err());
        assert!(decode_aws_chunked(b"5").is_err());
        assert!(decode_aws_chunked(b"ffffffffffffffff\r\nx\r\n").is_err());
    }

    #[test]
    fn xml_escaping_round_trips() {
        let s = "a&b<c>d\"e'f\r\n\tg\u{1}h\u{2713}";
        let e = escape(s);
        assert_eq!(e, "a&amp;b&lt;c&gt;d&quot;e&apos;f&#13;&#10;&#9;g\u{FFFD}h\u{2713}");
        let doc = Element::parse(&format!("<K>{e}</K>")).unwrap();
        assert_eq!(doc.text, "a&b<c>d\"e'f\r\n\tg\u{FFFD}h\u{2713}");
        assert_eq!(Element::parse("<K>&#x41;&#66;<![CDATA[a<b]]></K>").unwrap().text, "ABa<b");
        assert!(Element::parse("<K>a&bogus;</K>").is_err());
        assert!(Element::parse("<K>&#xZZ;</K>").is_err());
    }

    #[test]
    fn xml_reading() {
        let doc = r#"<?xml version="1.0"?><Delete xmlns="x"><Quiet>true</Quiet>
            <Object><Key>a&amp;b</Key><VersionId>v1</VersionId></Object>
            <Object ><Key>c</Key></Object><Object/></Delete>"#;
        let root = Element::parse(doc).unwrap();
        assert_eq!(root.name, "Delete");
        let objs: Vec<_> = root.children("Object").collect();
        assert_eq!(objs.len(), 3);
        assert_eq!(objs[0].child_text("Key").as_deref(), Some("a&b"));
        assert_eq!(objs[0].child_text("VersionId").as_deref(), Some("v1"));
        assert_eq!(objs[1].child_text("VersionId"), None);
        assert_eq!(objs[2], &Element { name: "Object".into(), ..Element::default() });
        assert_eq!(root.child_text("Quiet").as_deref(), Some("true"));
        assert_eq!(Element::parse("<R><KeyMarker>x</KeyMarker></R>").unwrap().child("Key"), None);
        assert!(Element::parse("<Key>unclosed").is_err());
    }

    #[test]
    fn xml_comments_and_nested_same_name_tags() {
        // A substring scan took the commented-out Object for a real one, and cut the outer
        // Key at the inner one's end tag.
        let doc = "<Delete><!-- <Object><Key>ghost</Key></Object> -->\
            <Object><Key>real<!-- c --></Key></Object>\
            <p:Object xmlns:p=\"urn:x\"><p:Key>prefixed</p:Key></p:Object></Delete>";
        let root = Element::parse(doc).unwrap();
        let keys: Vec<_> = root.children("Object").filter_map(|o| o.child_text("Key")).collect();
        assert_eq!(keys, ["real", "prefixed"]);

        let nested = Element::parse("<A><B><B>inner</B>outer</B><B>second</B></A>").unwrap();
        let bs: Vec<_> = nested.children("B").collect();
        assert_eq!(bs.len(), 2);
        assert_eq!(bs[0].text, "outer");
        assert_eq!(bs[0].child_text("B").as_deref(), Some("inner"));
        assert_eq!(bs[1].text, "second");
    }

    #[test]
    fn xml_malformed_documents() {
        for bad in ["", "text", "<A></B>", "<A><B></A>", "<A/><B/>", "<A></A>tail", "</A>", "<A>&amp</A>"] {
            assert_eq!(Element::parse(bad).ok(), None, "{bad:?}");
        }
        let deep = format!("{}{}", "<a>".repeat(MAX_XML_DEPTH + 1), "</a>".repeat(MAX_XML_DEPTH + 1));
        assert!(Element::parse(&deep).is_err());
        let ok = format!("{}{}", "<a>".repeat(MAX_XML_DEPTH), "</a>".repeat(MAX_XML_DEPTH));
        assert!(Element::parse(&ok).is_ok());
    }

    #[test]
    fn xml_builder() {
        let mut x = Xml::new("R");
        x.open("A").elem("K", "<&>").close("A");
        assert_eq!(
            x.finish("R"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R xmlns=\"{XMLNS}\"><A><K>&lt;&amp;&gt;</K></A></R>")
        );
    }

    #[test]
    fn url_encoding_for_listings() {
        assert_eq!(url_encode("a/b c+d%e~f_g-h.i\u{2713}"), "a/b%20c%2Bd%25e~f_g-h.i%E2%9C%93");
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(1_445_412_480_000), "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(iso_date(1_445_412_480_123), "2015-10-21T07:28:00.123Z");
        assert_eq!(parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"), Some(1_445_412_480_000));
        assert_eq!(parse_http_date("nonsense"), None);
    }
}
