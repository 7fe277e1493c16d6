//! Parses and builds Lambda function names, ARNs, qualifiers and layer ARNs, and reads the SigV4 credential scope (PROTOCOL.md §1.4).
//!
//! Everything here is hand-written string handling: no regex, no allocation
//! beyond the values returned. Error messages copy the wording of AWS's
//! request validation so clients see the text they would see from Lambda.

use std::fmt;

/// Longest accepted `FunctionName` value (a bare name, a partial ARN or a full ARN): 170 for
/// GetFunction and Invoke. The operations whose model says 140 are held to it by the model
/// validator; a name part longer than 64 is no pattern error, just a function that cannot exist.
const MAX_FUNCTION_REF_LEN: usize = 170;
/// Longest bare function name.
const MAX_FUNCTION_NAME_LEN: usize = 64;
/// Longest alias name.
const MAX_ALIAS_LEN: usize = 128;
/// Longest layer name, and longest layer version ARN.
const MAX_LAYER_NAME_LEN: usize = 140;

/// The model's pattern for the `FunctionName` member, quoted in error messages.
const FUNCTION_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?";
/// The model's pattern for the `LayerName` member, quoted in error messages.
const LAYER_NAME_PATTERN: &str = r"(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+";

/// The version name of the unpublished, editable version of a function.
pub const LATEST: &str = "$LATEST";

/// A function named by any of the accepted forms, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    /// `$LATEST`, a version number or an alias name, when the input carried one.
    pub qualifier: Option<String>,
    /// Present only when the input was a full ARN (or a region-prefixed partial ARN).
    pub region: Option<String>,
    /// Present only when the input was a full or partial ARN.
    pub account: Option<String>,
}

/// A rejected name or ARN. The message is ready for an `InvalidParameterValueException`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnError(pub String);

impl fmt::Display for ArnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArnError {}

/// A parsed layer version ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVersionRef {
    pub name: String,
    pub version: u64,
    pub region: String,
    pub account: String,
}

fn constraint_error(value: &str, member: &str, constraint: &str) -> ArnError {
    ArnError(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

fn function_pattern_error(value: &str) -> ArnError {
    constraint_error(
        value,
        "functionName",
        &format!("Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"),
    )
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(is_name_char)
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|c| c.is_ascii_digit())
}

fn is_qualifier(s: &str) -> bool {
    s == LATEST || is_name(s, MAX_ALIAS_LEN)
}

fn is_partition(s: &str) -> bool {
    // `aws[a-zA-Z-]*`: aws, aws-cn, aws-us-gov, aws-iso, ...
    s.strip_prefix("aws").is_some_and(|rest| rest.bytes().all(|c| c.is_ascii_alphabetic() || c == b'-'))
}

/// `[a-z]{2}(-gov)?-[a-z]+-\d{1}`, for example `us-west-2` or `us-gov-east-1`.
pub fn is_region(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 2 || !b[..2].iter().all(u8::is_ascii_lowercase) {
        return false;
    }
    let rest = &s[2..];
    let rest = rest.strip_prefix("-gov").unwrap_or(rest);
    let Some(rest) = rest.strip_prefix('-') else {
        return false;
    };
    let Some((word, digit)) = rest.split_once('-') else {
        return false;
    };
    !word.is_empty()
        && word.bytes().all(|c| c.is_ascii_lowercase())
        && digit.len() == 1
        && digit.bytes().all(|c| c.is_ascii_digit())
}

/// A region as it may appear in a layer ARN (`[a-zA-Z0-9-]+`).
fn is_loose_region(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Parses a `FunctionName` path or body value in any accepted form:
/// `name`, `name:qual`, `ACCOUNT:function:name[:qual]`,
/// `REGION:ACCOUNT:function:name[:qual]` and
/// `arn:PARTITION:lambda:REGION:ACCOUNT:function:name[:qual]`.
pub fn parse_function_ref(input: &str) -> Result<FunctionRef, ArnError> {
    if input.is_empty() {
        return Err(constraint_error(input, "functionName", "Member must have length greater than or equal to 1"));
    }
    if input.len() > MAX_FUNCTION_REF_LEN {
        return Err(constraint_error(
            input,
            "functionName",
            &format!("Member must have length less than or equal to {MAX_FUNCTION_REF_LEN}"),
        ));
    }
    let parts: Vec<&str> = input.split(':').collect();
    // Split off the prefix (region/account) and keep `name[:qual]`.
    let (region, account, tail) = match parts.as_slice() {
        // `arn:aws:lambda:REGION:ACCOUNT:function` matches the model's pattern with the
        // function named `function` (AWS then answers "Function not found: ...:function:function").
        ["arn", partition, "lambda", region, account, "function"] => {
            if !is_partition(partition) || !is_region(region) || !is_account(account) {
                return Err(function_pattern_error(input));
            }
            (Some(*region), Some(*account), &["function"][..])
        }
        ["arn", partition, "lambda", region, account, "function", tail @ ..] => {
            if !is_partition(partition) || !is_region(region) || !is_account(account) {
                return Err(function_pattern_error(input));
            }
            (Some(*region), Some(*account), tail)
        }
        [region, account, "function", tail @ ..] if is_region(region) => {
            if !is_account(account) {
                return Err(function_pattern_error(input));
            }
            (Some(*region), Some(*account), tail)
        }
        [account, "function", tail @ ..] if !tail.is_empty() => {
            if !is_account(account) {
                return Err(function_pattern_error(input));
            }
            (None, Some(*account), tail)
        }
        tail => (None, None, tail),
    };
    let (name, qualifier) = match tail {
        [name] => (*name, None),
        [name, qual] => (*name, Some(*qual)),
        _ => return Err(function_pattern_error(input)),
    };
    if !is_name(name, MAX_FUNCTION_REF_LEN) || qualifier.is_some_and(|q| !is_qualifier(q)) {
        return Err(function_pattern_error(input));
    }
    Ok(FunctionRef {
        name: name.to_owned(),
        qualifier: qualifier.map(str::to_owned),
        region: region.map(str::to_owned),
        account: account.map(str::to_owned),
    })
}

/// The model's pattern for the `Role` member, quoted in error messages.
const ROLE_PATTERN: &str = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+";

/// Checks an execution role ARN against the model's pattern:
/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub fn validate_role(role: &str) -> Result<(), ArnError> {
    let ok = (|| {
        let rest = role.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        let rest = rest.strip_prefix("iam::")?;
        let (account, name) = rest.split_once(':')?;
        let name = name.strip_prefix("role")?;
        let name = name.strip_prefix('/').unwrap_or(name);
        let name_ok = !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"+=,.@-_/".contains(&c));
        ((partition.is_empty() || is_partition(partition)) && is_account(account) && name_ok).then_some(())
    })();
    ok.ok_or_else(|| {
        constraint_error(role, "role", &format!("Member must satisfy regular expression pattern: {ROLE_PATTERN}"))
    })
}

/// Checks a bare function name (1–64 of `[a-zA-Z0-9-_]`), as CreateFunction stores it.
pub fn validate_function_name(name: &str) -> Result<(), ArnError> {
    if name.is_empty() {
        return Err(constraint_error(name, "functionName", "Member must have length greater than or equal to 1"));
    }
    if name.len() > MAX_FUNCTION_NAME_LEN {
        return Err(constraint_error(
            name,
            "functionName",
            &format!("Member must have length less than or equal to {MAX_FUNCTION_NAME_LEN}"),
        ));
    }
    if !is_name(name, MAX_FUNCTION_NAME_LEN) {
        return Err(function_pattern_error(name));
    }
    Ok(())
}

/// Checks a bare layer name (1–140 of `[a-zA-Z0-9-_]`).
pub fn validate_layer_name(name: &str) -> Result<(), ArnError> {
    if name.is_empty() {
        return Err(constraint_error(name, "layerName", "Member must have length greater than or equal to 1"));
    }
    if name.len() > MAX_LAYER_NAME_LEN {
        return Err(constraint_error(
            name,
            "layerName",
            &format!("Member must have length less than or equal to {MAX_LAYER_NAME_LEN}"),
        ));
    }
    if !is_name(name, MAX_LAYER_NAME_LEN) {
        return Err(constraint_error(
            name,
            "layerName",
            &format!("Member must satisfy regular expression pattern: {LAYER_NAME_PATTERN}"),
        ));
    }
    Ok(())
}

/// Parses a `LayerName` value: a bare layer name, or a layer ARN
/// `arn:PARTITION:lambda:REGION:ACCOUNT:layer:NAME` of at most 140 characters
/// (the model's pattern). Returns the bare name.
pub fn parse_layer_name(raw: &str) -> Result<String, ArnError> {
    if !raw.starts_with("arn:") {
        validate_layer_name(raw)?;
        return Ok(raw.to_owned());
    }
    if raw.len() > MAX_LAYER_NAME_LEN {
        return Err(constraint_error(
            raw,
            "layerName",
            &format!("Member must have length less than or equal to {MAX_LAYER_NAME_LEN}"),
        ));
    }
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "lambda", region, account, "layer", name]
            if is_loose_region(partition)
                && is_loose_region(region)
                && is_account(account)
                && is_name(name, MAX_LAYER_NAME_LEN) =>
        {
            Ok((*name).to_owned())
        }
        _ => Err(constraint_error(
            raw,
            "layerName",
            &format!("Member must satisfy regular expression pattern: {LAYER_NAME_PATTERN}"),
        )),
    }
}

/// The ARN partition a region belongs to: `aws-cn` for `cn-*`, `aws-us-gov` for
/// `us-gov-*`, `aws` otherwise.
pub fn partition_for_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
pub fn function_arn(region: &str, account: &str, name: &str, qualifier: Option<&str>) -> String {
    let partition = partition_for_region(region);
    // Pushed piece by piece: one is made for every invocation.
    let q = qualifier.unwrap_or("");
    let mut out = String::with_capacity(30 + partition.len() + region.len() + account.len() + name.len() + q.len());
    for part in ["arn:", partition, ":lambda:", region, ":", account, ":function:", name] {
        out.push_str(part);
    }
    if let Some(q) = qualifier {
        out.push(':');
        out.push_str(q);
    }
    out
}

/// `arn:aws:lambda:REGION:ACCOUNT:layer:NAME`.
pub fn layer_arn(region: &str, account: &str, layer_name: &str) -> String {
    let partition = partition_for_region(region);
    format!("arn:{partition}:lambda:{region}:{account}:layer:{layer_name}")
}

/// `arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION`.
pub fn layer_version_arn(region: &str, account: &str, layer_name: &str, version: u64) -> String {
    format!("{}:{version}", layer_arn(region, account, layer_name))
}

/// Parses `arn:PARTITION:lambda:REGION:ACCOUNT:layer:NAME:VERSION`, as listed in a
/// function's `Layers`. Returns `None` for anything else, including version 0.
pub fn parse_layer_version_arn(s: &str) -> Option<LayerVersionRef> {
    if s.len() > MAX_LAYER_NAME_LEN {
        return None;
    }
    let parts: Vec<&str> = s.split(':').collect();
    let ["arn", partition, "lambda", region, account, "layer", name, version] = parts.as_slice() else {
        return None;
    };
    if !is_partition(partition)
        || !is_loose_region(region)
        || !is_account(account)
        || !is_name(name, MAX_LAYER_NAME_LEN)
        || version.is_empty()
        || !version.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let version: u64 = version.parse().ok().filter(|v| *v > 0)?;
    Some(LayerVersionRef {
        name: (*name).to_owned(),
        version,
        region: (*region).to_owned(),
        account: (*account).to_owned(),
    })
}

/// Region and service from a SigV4 `Authorization` header's credential scope:
/// `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/lambda/aws4_request, ...`
/// gives `("us-west-2", "lambda")`. Any other scheme (including SigV4a, whose
/// scope has no region) gives `None`.
pub fn credential_scope(header: &str) -> Option<(String, String)> {
    let rest = header.trim_start().strip_prefix("AWS4-HMAC-SHA256")?;
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let credential = rest
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .find_map(|field| field.strip_prefix("Credential="))?;
    // AKID/DATE/REGION/SERVICE/aws4_request; read from the end so the key id is free-form.
    let mut scope = credential.rsplitn(5, '/');
    let terminator = scope.next()?;
    let service = scope.next()?;
    let region = scope.next()?;
    let date = scope.next()?;
    let key_id = scope.next()?;
    let date_ok = date.len() == 8 && date.bytes().all(|c| c.is_ascii_digit());
    let token_ok = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
    if terminator != "aws4_request" || !date_ok || key_id.is_empty() || !token_ok(region) || !token_ok(service) {
        return None;
    }
    Some((region.to_owned(), service.to_owned()))
}

/// The region from a SigV4 `Authorization` header (see [`credential_scope`]).
pub fn region_from_authorization(header: &str) -> Option<String> {
    credential_scope(header).map(|(region, _service)| region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_name_forms() {
        assert_eq!(parse_layer_name("my-layer").unwrap(), "my-layer");
        assert_eq!(parse_layer_name("arn:aws:lambda:us-east-1:123456789012:layer:my-layer").unwrap(), "my-layer");
        for bad in [
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "arn:aws:lambda:us-east-1:123456789012:layer:l:1",
            "arn:aws:lambda:us-east-1:12345:layer:l",
            "arn:",
            "bad name",
        ] {
            assert!(parse_layer_name(bad).is_err(), "{bad}");
        }
        let long = format!("arn:aws:lambda:us-east-1:123456789012:layer:{}", "l".repeat(100));
        assert!(parse_layer_name(&long).is_err());
    }

    fn ok(input: &str) -> FunctionRef {
        match parse_function_ref(input) {
            Ok(r) => r,
            Err(e) => panic!("{input:?} should parse: {e}"),
        }
    }

    fn rejected(input: &str) -> ArnError {
        match parse_function_ref(input) {
            Ok(r) => panic!("{input:?} should be rejected, got {r:?}"),
            Err(e) => e,
        }
    }

    fn fref(name: &str, q: Option<&str>, region: Option<&str>, account: Option<&str>) -> FunctionRef {
        FunctionRef {
            name: name.into(),
            qualifier: q.map(Into::into),
            region: region.map(Into::into),
            account: account.map(Into::into),
        }
    }

    #[test]
    fn bare_name() {
        assert_eq!(ok("my-function"), fref("my-function", None, None, None));
        assert_eq!(ok("A_b-9"), fref("A_b-9", None, None, None));
    }

    #[test]
    fn name_with_qualifiers() {
        assert_eq!(ok("my-function:v1"), fref("my-function", Some("v1"), None, None));
        assert_eq!(ok("my-function:7"), fref("my-function", Some("7"), None, None));
        assert_eq!(ok("my-function:$LATEST"), fref("my-function", Some("$LATEST"), None, None));
    }

    #[test]
    fn partial_arn() {
        assert_eq!(ok("123456789012:function:my-function"), fref("my-function", None, None, Some("123456789012")));
        assert_eq!(
            ok("123456789012:function:my-function:prod"),
            fref("my-function", Some("prod"), None, Some("123456789012"))
        );
    }

    #[test]
    fn region_prefixed_partial_arn() {
        assert_eq!(
            ok("us-west-2:123456789012:function:f:3"),
            fref("f", Some("3"), Some("us-west-2"), Some("123456789012"))
        );
    }

    #[test]
    fn full_arn_in_each_partition() {
        assert_eq!(
            ok("arn:aws:lambda:us-west-2:123456789012:function:my-function"),
            fref("my-function", None, Some("us-west-2"), Some("123456789012"))
        );
        assert_eq!(
            ok("arn:aws:lambda:us-west-2:123456789012:function:my-function:$LATEST"),
            fref("my-function", Some("$LATEST"), Some("us-west-2"), Some("123456789012"))
        );
        assert_eq!(
            ok("arn:aws-cn:lambda:cn-north-1:123456789012:function:f:live"),
            fref("f", Some("live"), Some("cn-north-1"), Some("123456789012"))
        );
        assert_eq!(
            ok("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f:12"),
            fref("f", Some("12"), Some("us-gov-west-1"), Some("123456789012"))
        );
    }

    #[test]
    fn rejects_empty() {
        let e = rejected("");
        assert!(e.0.contains("greater than or equal to 1"), "{e}");
    }

    #[test]
    fn rejects_too_long() {
        let long = format!("arn:aws:lambda:us-west-2:123456789012:function:{}", "a".repeat(130));
        assert!(long.len() > 170);
        let e = rejected(&long);
        assert!(e.0.contains("less than or equal to 170"), "{e}");
        // A name longer than 64 parses: AWS answers it with a 404 (CreateFunction checks 64).
        assert_eq!(ok(&"a".repeat(65)).name, "a".repeat(65));
        ok(&"a".repeat(64));
    }

    #[test]
    fn arn_ending_in_function_names_function() {
        let r = ok("arn:aws:lambda:us-east-1:123456789012:function");
        assert_eq!(r, fref("function", None, Some("us-east-1"), Some("123456789012")));
    }

    #[test]
    fn rejects_bad_characters() {
        for bad in ["my function", "my.function", "fn/x", "fn:v.1", "fn:$latest", "ü"] {
            let e = rejected(bad);
            assert!(e.0.contains("regular expression pattern"), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_bad_account() {
        rejected("arn:aws:lambda:us-east-1:123:function:x");
        rejected("12345678901a:function:x");
        rejected("1234567890123:function:x");
    }

    #[test]
    fn rejects_trailing_and_empty_components() {
        rejected("my-function:");
        rejected(":my-function");
        rejected("arn:aws:lambda:us-east-1:123456789012:function:x:");
        rejected("arn:aws:lambda:us-east-1:123456789012:function:");
        rejected("123456789012:function:");
        rejected("a:b:c");
    }

    #[test]
    fn rejects_malformed_arns() {
        rejected("arn:aws:s3:us-east-1:123456789012:function:x");
        rejected("arn:gcp:lambda:us-east-1:123456789012:function:x");
        rejected("arn:aws:lambda:useast1:123456789012:function:x");
        rejected("arn:aws:lambda:us-east-1:123456789012:layer:x");
        rejected("arn:aws:lambda:us-east-1:123456789012:function:x:1:2");
    }

    #[test]
    fn error_message_matches_aws_wording() {
        let e = rejected("bad name");
        assert_eq!(
            e.to_string(),
            "1 validation error detected: Value 'bad name' at 'functionName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: \
             (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?\
             (function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
        );
    }

    #[test]
    fn region_rule() {
        for good in ["us-west-2", "us-gov-west-1", "cn-north-1", "ap-southeast-1"] {
            assert!(is_region(good), "{good}");
        }
        for bad in ["us-west-22", "us-west", "US-west-2", "u-west-2", "us--2", "us-gov-2"] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn bare_function_name_rule() {
        assert!(validate_function_name("ok-name_1").is_ok());
        assert!(validate_function_name(&"x".repeat(64)).is_ok());
        assert!(validate_function_name("").is_err());
        assert!(validate_function_name(&"x".repeat(65)).is_err());
        assert!(validate_function_name("a:b").is_err());
        assert!(validate_function_name("arn:aws:lambda:us-east-1:123456789012:function:f").is_err());
    }

    #[test]
    fn role_rule() {
        for good in [
            "arn:aws:iam::000000000000:role/lambda",
            "arn:aws:iam::123456789012:role/service-role/my+role=x,y.z@w_1",
            "arn:aws-cn:iam::123456789012:role/r",
            "arn::iam::123456789012:role/r",
        ] {
            assert!(validate_role(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "lambda-role",
            "arn:aws:iam::000000000000:role/",
            "arn:aws:iam::000000000000:user/x",
            "arn:aws:iam::123:role/x",
            "arn:aws:s3::000000000000:role/x",
            "arn:gcp:iam::000000000000:role/x",
            "arn:aws:iam::000000000000:role/a b",
        ] {
            let e = validate_role(bad).err();
            assert!(e.is_some_and(|e| e.0.contains("'role'")), "{bad}");
        }
    }

    #[test]
    fn builds_function_arns() {
        assert_eq!(
            function_arn("us-east-1", "123456789012", "f", None),
            "arn:aws:lambda:us-east-1:123456789012:function:f"
        );
        assert_eq!(
            function_arn("us-east-1", "123456789012", "f", Some("$LATEST")),
            "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST"
        );
        assert_eq!(
            function_arn("cn-north-1", "123456789012", "f", Some("2")),
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:f:2"
        );
        let arn = function_arn("us-gov-west-1", "123456789012", "f", Some("prod"));
        assert_eq!(ok(&arn), fref("f", Some("prod"), Some("us-gov-west-1"), Some("123456789012")));
    }

    #[test]
    fn layer_arn_round_trip() {
        assert_eq!(
            layer_arn("us-east-1", "123456789012", "my-layer"),
            "arn:aws:lambda:us-east-1:123456789012:layer:my-layer"
        );
        let arn = layer_version_arn("us-east-1", "123456789012", "my-layer", 3);
        assert_eq!(arn, "arn:aws:lambda:us-east-1:123456789012:layer:my-layer:3");
        assert_eq!(
            parse_layer_version_arn(&arn),
            Some(LayerVersionRef {
                name: "my-layer".into(),
                version: 3,
                region: "us-east-1".into(),
                account: "123456789012".into(),
            })
        );
    }

    #[test]
    fn layer_arn_rejections() {
        for bad in [
            "arn:aws:lambda:us-east-1:123456789012:layer:my-layer",
            "arn:aws:lambda:us-east-1:123456789012:layer:my-layer:",
            "arn:aws:lambda:us-east-1:123456789012:layer:my-layer:0",
            "arn:aws:lambda:us-east-1:123456789012:layer:my-layer:-1",
            "arn:aws:lambda:us-east-1:123456789012:layer:my-layer:1x",
            "arn:aws:lambda:us-east-1:123456789012:layer:my.layer:1",
            "arn:aws:lambda:us-east-1:123:layer:my-layer:1",
            "arn:aws:lambda:us-east-1:123456789012:function:my-layer:1",
            "arn:aws:lambda:us-east-1:123456789012:layer:my-layer:1:2",
            "arn:aws:lambda:us-east-1:123456789012:layer:my-layer:99999999999999999999999",
            "my-layer:1",
            "",
        ] {
            assert_eq!(parse_layer_version_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn layer_name_rule() {
        assert!(validate_layer_name("my_layer-1").is_ok());
        assert!(validate_layer_name(&"l".repeat(140)).is_ok());
        assert!(validate_layer_name(&"l".repeat(141)).is_err());
        assert!(validate_layer_name("").is_err());
        let e = validate_layer_name("my layer").err();
        assert!(e.is_some_and(|e| e.0.contains("'layerName'")));
    }

    #[test]
    fn sigv4_scope() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-west-2/lambda/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abcdef";
        assert_eq!(credential_scope(h), Some(("us-west-2".to_string(), "lambda".to_string())));
        assert_eq!(region_from_authorization(h).as_deref(), Some("us-west-2"));
        // Without spaces after the commas, as some SDKs send it.
        let compact =
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-central-1/s3/aws4_request,SignedHeaders=host,Signature=00";
        assert_eq!(credential_scope(compact), Some(("eu-central-1".to_string(), "s3".to_string())));
    }

    #[test]
    fn sigv4_scope_rejections() {
        for bad in [
            "",
            "Bearer token",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/lambda, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/2024/us-west-2/lambda/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKID/20240101//lambda/aws4_request",
            "AWS4-HMAC-SHA256 Credential=/20240101/us-west-2/lambda/aws4_request",
            "AWS4-ECDSA-P256-SHA256 Credential=AKID/20240101/lambda/aws4_request",
            "AWS4-HMAC-SHA256X Credential=AKID/20240101/us-west-2/lambda/aws4_request",
        ] {
            assert_eq!(credential_scope(bad), None, "{bad}");
        }
    }
}
