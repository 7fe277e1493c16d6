//! Listing a bucket's index: current objects (ListObjects v1/v2) and all
//! versions (ListObjectVersions), with prefix, delimiter roll-up and paging.
//! Pure functions over `Bucket`, run under the store's lock.

use std::ops::Bound::{self, Excluded, Included, Unbounded};

use super::store::{Bucket, Version};

/// One page of current objects. Keys and common prefixes both count towards `max`.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub contents: Vec<Version>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix on this page: where the next page starts.
    pub last: Option<String>,
}

/// The common prefix `key` rolls up into, if `delimiter` occurs after `prefix`.
fn rolled_up<'k>(key: &'k str, prefix: &str, delimiter: &str) -> Option<&'k str> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = key.get(prefix.len()..)?;
    rest.find(delimiter).map(|i| &key[..prefix.len() + i + delimiter.len()])
}

/// The first key past every key that starts with `common_prefix`.
fn past(common_prefix: &str) -> Bound<String> {
    Excluded(format!("{common_prefix}\u{10FFFF}"))
}

/// What the scan found next: a common prefix, or a key that did not roll up.
enum Item<'a> {
    Prefix(&'a str),
    Key(&'a String, &'a [Version]),
}

/// Entries on a page, counted against its maximum.
struct Budget {
    count: usize,
    max: usize,
}

impl Budget {
    /// Takes a place for one entry; false when the page is full.
    fn take(&mut self) -> bool {
        if self.count == self.max {
            return false;
        }
        self.count += 1;
        true
    }
}

/// Walks the keys under `prefix` from `start`, rolling keys up into common prefixes at
/// `delimiter`; a common prefix at or before `marker` was on an earlier page. Each common
/// prefix takes a place in `budget` before `on` hears of it; `on` takes places for what it
/// adds from a key and answers false when the page is full. Returns whether the page is
/// truncated.
fn scan<'a>(
    b: &'a Bucket,
    prefix: &str,
    delimiter: &str,
    start: Bound<String>,
    marker: &str,
    budget: &mut Budget,
    mut on: impl FnMut(Item<'a>, &mut Budget) -> bool,
) -> bool {
    let mut cursor = start;
    'scan: loop {
        let range = b.objects.range::<str, _>((cursor.as_ref().map(String::as_str), Unbounded));
        for (key, versions) in range {
            if !key.starts_with(prefix) {
                // Keys under a prefix are contiguous and we started inside them.
                break 'scan;
            }
            if let Some(cp) = rolled_up(key, prefix, delimiter) {
                cursor = past(cp);
                if !marker.is_empty() && cp <= marker {
                    continue 'scan;
                }
                if !budget.take() {
                    return true;
                }
                on(Item::Prefix(cp), budget);
                continue 'scan;
            }
            if !on(Item::Key(key, versions), budget) {
                return true;
            }
        }
        break;
    }
    false
}

/// Keys under `prefix` strictly after `after` ("" = from the start), up to
/// `max` entries. A common prefix at or before `after` was on an earlier page.
pub(super) fn list_current(b: &Bucket, prefix: &str, delimiter: &str, after: &str, max: usize) -> Listing {
    let mut out = Listing::default();
    if max == 0 {
        return out;
    }
    let start =
        if !after.is_empty() && after >= prefix { Excluded(after.to_string()) } else { Included(prefix.to_string()) };
    let mut budget = Budget { count: 0, max };
    out.truncated = scan(b, prefix, delimiter, start, after, &mut budget, |item, budget| {
        match item {
            Item::Prefix(cp) => {
                out.prefixes.push(cp.to_string());
                out.last = Some(cp.to_string());
            }
            Item::Key(key, versions) => {
                let Some(latest) = versions.last().filter(|v| !v.delete_marker) else {
                    return true;
                };
                if !budget.take() {
                    return false;
                }
                out.contents.push(latest.clone());
                out.last = Some(key.clone());
            }
        }
        true
    });
    out
}

/// One page of ListObjectVersions: versions newest first within a key.
#[derive(Debug, Default)]
pub(super) struct VersionListing {
    /// Each version (or delete marker) with whether it is the key's latest.
    pub versions: Vec<(Version, bool)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
}

/// Versions under `prefix` after (`key_marker`, `version_id_marker`).
pub(super) fn list_versions(
    b: &Bucket,
    prefix: &str,
    delimiter: &str,
    key_marker: &str,
    version_id_marker: &str,
    max: usize,
) -> VersionListing {
    let mut out = VersionListing::default();
    if max == 0 {
        return out;
    }
    let start = Included(if !key_marker.is_empty() && key_marker >= prefix { key_marker } else { prefix }.to_string());
    let mut budget = Budget { count: 0, max };
    out.truncated = scan(b, prefix, delimiter, start, key_marker, &mut budget, |item, budget| {
        match item {
            Item::Prefix(cp) => {
                out.prefixes.push(cp.to_string());
                out.next_key_marker = Some(cp.to_string());
                out.next_version_id_marker = None;
            }
            Item::Key(key, _) if key == key_marker && version_id_marker.is_empty() => {}
            Item::Key(key, versions) => {
                let mut skipping = key == key_marker;
                for (i, v) in versions.iter().rev().enumerate() {
                    if skipping {
                        skipping = v.version_id != version_id_marker;
                        continue;
                    }
                    if !budget.take() {
                        return false;
                    }
                    out.versions.push((v.clone(), i == 0));
                    out.next_key_marker = Some(key.clone());
                    out.next_version_id_marker = Some(v.version_id.clone());
                }
            }
        }
        true
    });
    if !out.truncated {
        out.next_key_marker = None;
        out.next_version_id_marker = None;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::store::{ObjectAttrs, Versioning};
    use super::*;
    use std::collections::BTreeMap;

    fn version(key: &str, id: &str, seq: u64, delete_marker: bool) -> Version {
        Version {
            key: key.into(),
            version_id: id.into(),
            seq,
            file: format!("f{seq}"),
            delete_marker,
            size: 1,
            etag: "\"e\"".into(),
            last_modified_ms: 0,
            attrs: ObjectAttrs::default(),
        }
    }

    fn bucket(keys: &[&str]) -> Bucket {
        let mut objects = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            objects.insert(k.to_string(), vec![version(k, "null", i as u64, false)]);
        }
        Bucket { created_ms: 0, versioning: Versioning::Unversioned, objects }
    }

    fn keys(l: &Listing) -> Vec<&str> {
        l.contents.iter().map(|v| v.key.as_str()).collect()
    }

    /// Pages through a listing as a client following `last` would.
    fn all_pages(b: &Bucket, prefix: &str, delimiter: &str, max: usize) -> (Vec<String>, Vec<String>, usize) {
        let (mut ks, mut ps, mut pages) = (Vec::new(), Vec::new(), 0);
        let mut after = String::new();
        loop {
            let l = list_current(b, prefix, delimiter, &after, max);
            pages += 1;
            assert!(l.contents.len() + l.prefixes.len() <= max);
            ks.extend(l.contents.iter().map(|v| v.key.clone()));
            ps.extend(l.prefixes.iter().cloned());
            if !l.truncated {
                return (ks, ps, pages);
            }
            after = l.last.unwrap();
        }
    }

    #[test]
    fn prefix_and_delimiter() {
        let b = bucket(&["a.txt", "dir/x", "dir/y", "dir/sub/z", "dirt", "e/f", "z"]);
        let l = list_current(&b, "", "/", "", 1000);
        assert_eq!(keys(&l), ["a.txt", "dirt", "z"]);
        assert_eq!(l.prefixes, ["dir/", "e/"]);
        assert!(!l.truncated);
        let l = list_current(&b, "dir/", "/", "", 1000);
        assert_eq!(keys(&l), ["dir/x", "dir/y"]);
        assert_eq!(l.prefixes, ["dir/sub/"]);
        let l = list_current(&b, "dir", "", "", 1000);
        assert_eq!(keys(&l), ["dir/sub/z", "dir/x", "dir/y", "dirt"]);
        let l = list_current(&b, "nothing", "/", "", 1000);
        assert!(l.contents.is_empty() && l.prefixes.is_empty());
    }

    #[test]
    fn pagination_visits_everything_once() {
        let names: Vec<String> = (0..2500).map(|i| format!("k/{i:05}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let b = bucket(&refs);
        let (ks, ps, pages) = all_pages(&b, "", "", 1000);
        assert_eq!(ks, names);
        assert!(ps.is_empty());
        assert_eq!(pages, 3);
        let (ks, _, pages) = all_pages(&b, "k/", "", 7);
        assert_eq!(ks.len(), 2500);
        assert_eq!(pages, 358);
        // Exactly max items: one page, not truncated.
        let l = list_current(&b, "", "", "", 2500);
        assert_eq!(l.contents.len(), 2500);
        assert!(!l.truncated);
    }

    #[test]
    fn pagination_with_common_prefixes() {
        let b = bucket(&["a/1", "a/2", "b", "c/1", "c/2", "c/3", "d", "e/1"]);
        let (ks, ps, _) = all_pages(&b, "", "/", 1);
        assert_eq!(ks, ["b", "d"]);
        assert_eq!(ps, ["a/", "c/", "e/"]);
        let (ks, ps, pages) = all_pages(&b, "", "/", 2);
        assert_eq!(ks, ["b", "d"]);
        assert_eq!(ps, ["a/", "c/", "e/"]);
        assert_eq!(pages, 3);
    }

    #[test]
    fn start_after_and_zero_max() {
        let b = bucket(&["a", "b", "c"]);
        assert_eq!(keys(&list_current(&b, "", "", "a", 1000)), ["b", "c"]);
        assert_eq!(keys(&list_current(&b, "", "", "bb", 1000)), ["c"]);
        assert_eq!(keys(&list_current(&b, "", "", "c", 1000)), Vec::<&str>::new());
        let l = list_current(&b, "", "", "", 0);
        assert!(l.contents.is_empty() && !l.truncated);
    }

    #[test]
    fn delete_markers_hide_keys() {
        let mut b = bucket(&["a", "b"]);
        b.objects.get_mut("a").unwrap().push(version("a", "dm", 10, true));
        assert_eq!(keys(&list_current(&b, "", "", "", 1000)), ["b"]);
    }

    #[test]
    fn version_pages() {
        let mut b = bucket(&[]);
        b.objects.insert(
            "a".into(),
            vec![version("a", "a1", 1, false), version("a", "a2", 2, false), version("a", "a3", 3, true)],
        );
        b.objects.insert("b".into(), vec![version("b", "b1", 4, false)]);
        let all = list_versions(&b, "", "", "", "", 1000);
        let ids: Vec<(&str, bool)> = all.versions.iter().map(|(v, l)| (v.version_id.as_str(), *l)).collect();
        assert_eq!(ids, [("a3", true), ("a2", false), ("a1", false), ("b1", true)]);
        assert!(!all.truncated && all.next_key_marker.is_none());

        let mut seen = Vec::new();
        let (mut km, mut vm) = (String::new(), String::new());
        loop {
            let page = list_versions(&b, "", "", &km, &vm, 1);
            seen.extend(page.versions.iter().map(|(v, _)| v.version_id.clone()));
            if !page.truncated {
                break;
            }
            km = page.next_key_marker.unwrap();
            vm = page.next_version_id_marker.unwrap_or_default();
        }
        assert_eq!(seen, ["a3", "a2", "a1", "b1"]);
        // A key marker alone skips that key's versions.
        let page = list_versions(&b, "", "", "a", "", 1000);
        assert_eq!(page.versions.len(), 1);
    }
}
