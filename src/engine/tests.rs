//! Unit tests of the engine: the real pool and Runtime API endpoints, over HTTP, with the
//! fake sandbox (a runtime task in the test process) in place of processes and containers.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::runtime_api::{self, Endpoint, Invocation};
use super::*;

fn engine(max: usize, queue: usize, ttl: Duration) -> Arc<Engine> {
    let dir = std::env::temp_dir().join(format!("ruststack-engine-test-{}", uuid::Uuid::new_v4().simple()));
    let mut cfg = EngineConfig::for_tests(dir);
    // No server listens here: nothing of a real server's (its containers) is ever taken for ours.
    cfg.server_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    cfg.max_environments = max;
    cfg.queue_size = queue;
    cfg.ttl = ttl;
    cfg.init_timeout = Duration::from_secs(5);
    Engine::new(&cfg).expect("engine")
}

fn spec(function: &str, handler: &str, timeout: Duration) -> Arc<EnvSpec> {
    Arc::new(EnvSpec {
        key: format!("{function}:$LATEST:r1"),
        function: function.to_string(),
        version: "$LATEST".into(),
        runtime: Some("provided.al2023".into()),
        handler: Some(handler.to_string()),
        memory_mb: 128,
        timeout,
        environment: BTreeMap::new(),
        architecture: Architecture::X86_64,
        package: PackageType::Zip,
        image_uri: None,
        image_config: ImageConfig::default(),
        code_dir: None,
        layer_dirs: Vec::new(),
        live_code: false,
        live_layers: false,
        region: "us-east-1".into(),
        account: "000000000000".into(),
        log_group: format!("/aws/lambda/{function}"),
        logging: Default::default(),
        kind: SandboxKind::Fake,
        reason: "test",
        provisioned: false,
        debug: None,
    })
}

fn request(payload: &str) -> Request {
    Request {
        request_id: crate::aws::request_id(),
        payload: Bytes::from(payload.to_string()),
        invoked_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
        ..Default::default()
    }
}

/// The fake's answer: which environment ran it, and the payload it saw.
fn answer(run: &RunOutcome) -> (String, String) {
    match &run.ended {
        Ended::Posted(Outcome::Response { body, .. }) => {
            let v: Value = serde_json::from_slice(body).expect("json answer");
            (v["env"].as_str().unwrap_or_default().to_string(), v["payload"].as_str().unwrap_or_default().to_string())
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

/// Waits (at most 5 s) until `cond` holds; fails the test with `what` otherwise.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn reuses_a_warm_environment() {
    let e = engine(10, 10, LONG);
    let s = spec("f", "echo", LONG);
    let first = e.invoke(s.clone(), request("{\"n\":1}")).await.expect("first");
    let second = e.invoke(s.clone(), request("")).await.expect("second");
    let (env1, p1) = answer(&first);
    let (env2, p2) = answer(&second);
    assert_eq!(p1, "{\"n\":1}");
    assert_eq!(p2, "{}", "an empty payload reaches the runtime as {{}}");
    assert_eq!(env1, env2, "the second invocation ran on the warm environment");
    assert!(first.init_duration.is_some(), "a cold start reports its init");
    assert!(second.init_duration.is_none(), "a warm start has no init");
    assert!(String::from_utf8_lossy(&second.output).starts_with("handling "), "output: {:?}", second.output);
    assert_eq!(e.counts(), (1, 1, 0));
}

#[tokio::test]
async fn queue_full_is_429() {
    let e = engine(1, 0, LONG);
    let slow = spec("slow", "sleep:400", LONG);
    let busy = tokio::spawn({
        let (e, s) = (e.clone(), slow.clone());
        async move { e.invoke(s, request("{}")).await }
    });
    wait_until("one environment is busy", || e.counts().2 == 1).await;
    let err = match e.invoke(spec("other", "echo", LONG), request("{}")).await {
        Err(err) => err,
        Ok(_) => panic!("a second invocation past the limit and a full queue must be refused"),
    };
    assert_eq!(err.status, http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(err.code, "TooManyRequestsException");
    assert_eq!(err.message, "Rate Exceeded.");
    assert_eq!(err.reason, Some("ConcurrentInvocationLimitExceeded"));
    answer(&busy.await.expect("task").expect("the busy invocation still succeeds"));
}

#[tokio::test]
async fn queued_invocation_waits_for_the_busy_slot() {
    let e = engine(1, 1, LONG);
    let s = spec("q", "sleep:200", LONG);
    let first = tokio::spawn({
        let (e, s) = (e.clone(), s.clone());
        async move { e.invoke(s, request("{\"n\":1}")).await }
    });
    wait_until("the first invocation is busy", || e.counts().2 == 1).await;
    let second = tokio::spawn({
        let (e, s) = (e.clone(), s.clone());
        async move { e.invoke(s, request("{\"n\":2}")).await }
    });
    wait_until("the second invocation is queued", || e.pool.queued() == 1).await;
    // The queue (size 1) is taken by the second: a third is refused.
    let third = e.invoke(spec("q3", "echo", LONG), request("{}")).await.err().expect("refused");
    assert_eq!(third.status, http::StatusCode::TOO_MANY_REQUESTS);
    let (env1, p1) = answer(&first.await.expect("task").expect("first"));
    let (env2, p2) = answer(&second.await.expect("task").expect("second"));
    assert_eq!((p1.as_str(), p2.as_str()), ("{\"n\":1}", "{\"n\":2}"));
    assert_eq!(env1, env2, "the queued invocation ran on the environment the first one freed");
}

#[tokio::test]
async fn ttl_stops_idle_environments() {
    let e = engine(10, 10, Duration::from_millis(150));
    e.invoke(spec("t", "echo", LONG), request("{}")).await.expect("invoke");
    assert_eq!(e.counts().0, 1);
    wait_until("the idle environment is reaped", || e.counts() == (0, 0, 0)).await;
}

#[tokio::test]
async fn drain_stops_old_environments() {
    let e = engine(10, 10, LONG);
    let s = spec("d", "echo", LONG);
    let (before, _) = answer(&e.invoke(s.clone(), request("{}")).await.expect("before"));
    e.drain(&s.function_id());
    assert_eq!(e.counts(), (0, 0, 0), "the idle environment is stopped at once");
    let (after, _) = answer(&e.invoke(s.clone(), request("{}")).await.expect("after"));
    assert_ne!(before, after, "after a drain, a new environment serves");

    // A busy environment is not reused after a drain that happened while it ran.
    let slow = spec("d", "sleep:200", LONG);
    e.drain(&s.function_id());
    let busy = tokio::spawn({
        let (e, s) = (e.clone(), slow.clone());
        async move { e.invoke(s, request("{}")).await }
    });
    wait_until("the slow invocation is busy", || e.counts().2 == 1).await;
    e.drain(&s.function_id());
    answer(&busy.await.expect("task").expect("busy invocation"));
    assert_eq!(e.counts().1, 0, "the drained environment did not go back to idle");
    wait_until("the drained environment is stopped", || e.counts().0 == 0).await;
}

/// `spec` in another region (same name, same pool key shape).
fn in_region(s: &EnvSpec, region: &str) -> Arc<EnvSpec> {
    let mut s = s.clone();
    s.region = region.into();
    s.key = format!("{region}:{}", s.key);
    Arc::new(s)
}

#[tokio::test]
async fn drain_and_retire_leave_the_same_name_in_another_region_alone() {
    let e = engine(10, 10, LONG);
    let here = spec("same", "echo", LONG);
    let there = in_region(&here, "eu-west-1");
    let (a, _) = answer(&e.invoke(here.clone(), request("{}")).await.expect("here"));
    let (b, _) = answer(&e.invoke(there.clone(), request("{}")).await.expect("there"));
    e.drain(&here.function_id());
    e.retire(&here.function_id(), &["$LATEST".to_string()], true);
    let (b2, _) = answer(&e.invoke(there.clone(), request("{}")).await.expect("there again"));
    assert_eq!(b, b2, "the other region's environment keeps serving");
    let (a2, _) = answer(&e.invoke(here.clone(), request("{}")).await.expect("here again"));
    assert_ne!(a, a2, "this region's environment was replaced");
}

#[tokio::test]
async fn retire_starts_the_replacement_ahead() {
    let e = engine(10, 10, LONG);
    let s = spec("ahead", "echo", LONG);
    let first = e.invoke(s.clone(), request("{}")).await.expect("first");
    assert!(first.init_duration.is_some(), "a cold start reports its init");
    let (before, _) = answer(&first);
    let warm = e.invoke(s.clone(), request("{}")).await.expect("warm");
    assert!(warm.init_duration.is_none());
    e.retire(&s.function_id(), &["$LATEST".to_string()], true);
    // The old one goes, and a new one is started and goes idle with no invocation asking.
    wait_until("the replacement is idle and the old one gone", || e.counts() == (1, 1, 0)).await;
    let run = e.invoke(s.clone(), request("{}")).await.expect("after");
    let (after, _) = answer(&run);
    assert_ne!(before, after, "the replacement serves");
    assert!(run.init_duration.is_some(), "its first invocation reports the init it had");
    let again = e.invoke(s.clone(), request("{}")).await.expect("again");
    assert_eq!(answer(&again).0, after);
    assert!(again.init_duration.is_none());
    // Another version's environments are not retired.
    let mut v1 = (*s).clone();
    v1.version = "1".into();
    v1.key = "ahead:1:r1".into();
    let v1 = Arc::new(v1);
    let (one, _) = answer(&e.invoke(v1.clone(), request("{}")).await.expect("v1"));
    e.retire(&s.function_id(), &["$LATEST".to_string()], true);
    assert_eq!(answer(&e.invoke(v1.clone(), request("{}")).await.expect("v1 again")).0, one);
}

#[tokio::test]
async fn an_invoke_waits_for_the_replacement_starting_ahead() {
    let e = engine(10, 10, LONG);
    let s = spec("waits", "hold:waits", LONG);
    sandbox::fake::release("waits");
    let (before, _) = answer(&e.invoke(s.clone(), request("{}")).await.expect("first"));
    e.retire(&s.function_id(), &["$LATEST".to_string()], true);
    wait_until("the replacement's start is held", || sandbox::fake::held("waits") == 1).await;
    let run = tokio::spawn({
        let (e, s) = (e.clone(), s.clone());
        async move { e.invoke(s, request("{}")).await }
    });
    wait_until("the invocation is busy", || e.counts().2 == 1).await;
    // It waits for the replacement: no second start beside it.
    assert_eq!(sandbox::fake::held("waits"), 1);
    sandbox::fake::release("waits");
    let (after, _) = answer(&run.await.expect("task").expect("the invocation"));
    assert_ne!(before, after);
    assert_eq!(e.counts(), (1, 1, 0), "one environment: the replacement");
}

#[tokio::test]
async fn a_change_during_the_replacements_start_starts_another() {
    let e = engine(10, 10, LONG);
    let s = spec("again", "hold:again", LONG);
    sandbox::fake::release("again");
    answer(&e.invoke(s.clone(), request("{}")).await.expect("first"));
    let retire = || e.retire(&s.function_id(), &["$LATEST".to_string()], true);
    retire();
    wait_until("the replacement's start is held", || sandbox::fake::held("again") == 1).await;
    // Changed again while it starts: it comes up on the old code, so another one follows.
    retire();
    sandbox::fake::release("again");
    wait_until("a second replacement's start is held", || sandbox::fake::held("again") == 1).await;
    assert_eq!(e.counts().1, 0, "the stale replacement never went idle");
    sandbox::fake::release("again");
    wait_until("the second replacement is the one idle environment", || e.counts() == (1, 1, 0)).await;
}

#[tokio::test]
async fn retire_replaces_provisioned_environments() {
    let e = engine(10, 10, LONG);
    // Each invocation takes a while, so that one can be caught busy.
    let mut p = (*spec("prov", "sleep:300", LONG)).clone();
    p.version = "1".into();
    p.key = "prov:1:r1".into();
    p.provisioned = true;
    let p = Arc::new(p);
    assert_eq!(e.provision(p.clone(), 2).await.expect("provisioned"), 2);
    let first = e.invoke(p.clone(), request("{}")).await.expect("first");
    assert!(first.init_duration.is_none(), "provisioned: no cold start");
    let (old, _) = answer(&first);
    // A drain (an update of $LATEST) keeps them; a change of their code in place does not.
    e.drain(&p.function_id());
    assert_eq!(answer(&e.invoke(p.clone(), request("{}")).await.expect("kept")).0, old);
    e.retire(&p.function_id(), &["1".to_string()], true);
    wait_until("two fresh provisioned environments are idle", || e.counts() == (2, 2, 0)).await;
    let (new, _) = answer(&e.invoke(p.clone(), request("{}")).await.expect("after"));
    assert_ne!(old, new, "a fresh provisioned environment serves");
    // A busy one is replaced when its invocation ends.
    let busy = tokio::spawn({
        let (e, p) = (e.clone(), p.clone());
        async move { e.invoke(p, request("{}")).await }
    });
    wait_until("busy", || e.counts().2 == 1).await;
    let (_, idle_before, _) = e.counts();
    assert_eq!(idle_before, 1);
    e.retire(&p.function_id(), &["1".to_string()], true);
    let (was_busy, _) = answer(&busy.await.expect("task").expect("busy"));
    wait_until("two fresh provisioned environments again", || e.counts() == (2, 2, 0)).await;
    for _ in 0..3 {
        let (env, _) = answer(&e.invoke(p.clone(), request("{}")).await.expect("after busy"));
        assert_ne!(env, was_busy, "the retired busy environment does not serve again");
    }
}

#[tokio::test]
async fn death_before_next_is_an_exit_error() {
    let e = engine(10, 10, LONG);
    let run = e.invoke(spec("x", "exit", LONG), request("{}")).await.expect("run");
    match run.ended {
        Ended::Died(Death::Exited(why)) => assert_eq!(why, "exit status 1"),
        other => panic!("expected the runtime's exit, got {other:?}"),
    }
    wait_until("the dead environment is gone", || e.counts() == (0, 0, 0)).await;
}

#[tokio::test]
async fn warm_runtime_gone_before_next_is_replaced() {
    let e = engine(10, 10, LONG);
    let s = spec("o", "once", LONG);
    let (first, _) = answer(&e.invoke(s.clone(), request("{}")).await.expect("first"));
    // The runtime exited after its answer; the next invocation runs on a fresh one.
    let (second, _) = answer(&e.invoke(s.clone(), request("{}")).await.expect("second"));
    assert_ne!(first, second);
}

#[tokio::test]
async fn deadline_times_out_and_replaces_the_environment() {
    let e = engine(10, 10, LONG);
    let timeout = Duration::from_millis(100);
    let run = e.invoke(spec("slow", "sleep:3000", timeout), request("{}")).await.expect("run");
    match run.ended {
        Ended::TimedOut { timeout: t } => assert_eq!(t, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(run.duration >= timeout && run.duration < Duration::from_secs(2), "took {:?}", run.duration);
    assert_eq!(e.counts(), (0, 0, 0), "a timed-out environment is stopped, not kept");
}

#[tokio::test]
async fn attached_runtime_is_handed_out_first() {
    let e = engine(10, 10, LONG);
    let s = spec("a", "echo", LONG);
    let info = e.attach(&s, false).await.expect("attach");
    let again = e.attach(&s, false).await.expect_err("a second attachment is refused");
    assert_eq!(again.status, http::StatusCode::CONFLICT);
    assert!(again.message.starts_with("Function a is already attached in us-east-1 (attachment "), "{}", again.message);
    assert_eq!(info.function, s.function_id());
    // The same name in another region is another function: it is not attached.
    let mut other = (*s).clone();
    other.region = "eu-west-1".into();
    other.key = "a:$LATEST:eu".into();
    answer(&e.invoke(Arc::new(other.clone()), request("{}")).await.expect("the other region's a"));
    assert_eq!(e.counts().0, 1, "the other region's function ran in a pooled environment");
    // Play the attached runtime by hand, over HTTP.
    let api: SocketAddr = info.runtime_api.parse().expect("addr");
    let fake = FakeClient::new(api);
    let invoke = tokio::spawn({
        let (e, s) = (e.clone(), s.clone());
        async move { e.invoke(s, request("{\"to\":\"attached\"}")).await }
    });
    let (id, payload) = fake.next().await;
    assert_eq!(payload, "{\"to\":\"attached\"}");
    assert_eq!(fake.respond(&id, "\"from attached\"").await, reqwest::StatusCode::ACCEPTED);
    let run = invoke.await.expect("task").expect("run");
    match &run.ended {
        Ended::Posted(Outcome::Response { body, .. }) => assert_eq!(&body[..], b"\"from attached\""),
        other => panic!("expected the attached runtime's answer, got {other:?}"),
    }
    assert_eq!(run.log_stream, info.log_stream);
    assert_eq!(e.counts().0, 1, "no pooled environment was started for the attached function");
    assert!(!e.detach(&other.function_id(), &info.id), "the other region's a has no attachment");
    assert!(e.detach(&s.function_id(), &info.id));
    assert!(!e.detach(&s.function_id(), &info.id), "detached once only");
    answer(&e.invoke(s, request("{}")).await.expect("after detach"));
    assert_eq!(e.counts().0, 2, "after detaching, a pooled environment serves");
}

/// One environment answers only its own invocation: its endpoint refuses another's id.
#[tokio::test]
async fn environment_answers_only_its_own_invocation() {
    let ip = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (a, b) = (Endpoint::new("a"), Endpoint::new("b"));
    let la = runtime_api::serve(ip, a.clone()).await.expect("listen a");
    let lb = runtime_api::serve(ip, b.clone()).await.expect("listen b");
    let deliver = |ep: &Endpoint, id: &str| {
        let (started, _) = tokio::sync::oneshot::channel();
        let (done, rx) = tokio::sync::oneshot::channel();
        let inv = Invocation {
            request_id: id.to_string(),
            payload: Bytes::from_static(b"{}"),
            invoked_arn: "arn".into(),
            trace_id: "t".into(),
            client_context: None,
            cognito_identity: None,
            tenant_id: None,
            timeout: LONG,
            started,
            done,
        };
        assert!(ep.deliver(inv).is_ok());
        rx
    };
    let mut done_a = deliver(&a, "id-a");
    let done_b = deliver(&b, "id-b");
    let (fa, fb) = (FakeClient::new(la.addr), FakeClient::new(lb.addr));
    assert_eq!(fa.next().await.0, "id-a");
    assert_eq!(fb.next().await.0, "id-b");
    // Environment a posts b's request id: refused, and neither invocation ends.
    let resp = fa.post("id-b/response", "\"stolen\"").await;
    assert_eq!(resp.0, reqwest::StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_str(&resp.1).expect("json error");
    assert_eq!(v["errorType"], "InvalidRequestID");
    assert_eq!(v["errorMessage"], "Invalid request ID");
    assert!(done_a.try_recv().is_err(), "a's invocation is still in flight");
    // Each answers its own.
    assert_eq!(fa.respond("id-a", "\"a\"").await, reqwest::StatusCode::ACCEPTED);
    assert_eq!(fb.respond("id-b", "\"b\"").await, reqwest::StatusCode::ACCEPTED);
    match (done_a.await, done_b.await) {
        (Ok(Outcome::Response { body: ba, .. }), Ok(Outcome::Response { body: bb, .. })) => {
            assert_eq!((&ba[..], &bb[..]), (&b"\"a\""[..], &b"\"b\""[..]));
        }
        other => panic!("expected both responses, got {other:?}"),
    }
}

/// A runtime client played by the test, over HTTP.
struct FakeClient {
    client: reqwest::Client,
    base: String,
}

impl FakeClient {
    fn new(api: SocketAddr) -> FakeClient {
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        FakeClient { client, base: format!("http://{api}/2018-06-01/runtime/invocation") }
    }

    /// `/next`: the request id and payload.
    async fn next(&self) -> (String, String) {
        let r = self.client.get(format!("{}/next", self.base)).send().await.expect("/next");
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        let id = r.headers()["lambda-runtime-aws-request-id"].to_str().expect("id").to_string();
        (id, r.text().await.expect("payload"))
    }

    async fn post(&self, path: &str, body: &str) -> (reqwest::StatusCode, String) {
        let r = self.client.post(format!("{}/{path}", self.base)).body(body.to_string()).send().await.expect("post");
        (r.status(), r.text().await.unwrap_or_default())
    }

    async fn respond(&self, id: &str, body: &str) -> reqwest::StatusCode {
        self.post(&format!("{id}/response"), body).await.0
    }
}

#[tokio::test]
async fn a_starting_environment_keeps_its_code_dirs_in_use() {
    let e = engine(10, 10, LONG);
    let code = std::path::PathBuf::from("/nonexistent/ruststack-test/code/c0de");
    let layer = std::path::PathBuf::from("/nonexistent/ruststack-test/layers/1a7e");
    let mut s = (*spec("starting", "hold:starting-dirs", LONG)).clone();
    s.code_dir = Some(code.clone());
    s.layer_dirs = vec![layer.clone()];
    let s = Arc::new(s);
    let run = tokio::spawn({
        let (e, s) = (e.clone(), s.clone());
        async move { e.invoke(s, request("{}")).await }
    });
    wait_until("the environment's start is held", || sandbox::fake::held("starting-dirs") == 1).await;
    // Starting: not on the pool's books of environments yet, but its directories are in use.
    assert_eq!(e.counts(), (1, 0, 1));
    let in_use = e.dirs_in_use();
    assert!(in_use.contains(&code), "a starting environment's code dir is in use: {in_use:?}");
    assert!(in_use.contains(&layer), "a starting environment's layer dir is in use: {in_use:?}");
    sandbox::fake::release("starting-dirs");
    let (_, payload) = answer(&run.await.expect("task").expect("the held start goes on"));
    assert_eq!(payload, "{}");
    // Idle now: still in use; once drained, not any more (the start left nothing behind).
    assert!(e.dirs_in_use().contains(&code), "an idle environment's code dir is in use");
    e.drain(&s.function_id());
    wait_until("no directory is in use after the drain", || e.dirs_in_use().is_empty()).await;
    assert_eq!(e.counts(), (0, 0, 0));
}

#[tokio::test]
async fn room_is_signalled_once_a_busy_slot_is_free() {
    let e = engine(1, 0, LONG);
    let busy = tokio::spawn({
        let (e, s) = (e.clone(), spec("busy", "sleep:300", LONG));
        async move { e.invoke(s, request("{}")).await }
    });
    wait_until("one environment is busy", || e.counts().2 == 1).await;
    let room = e.room();
    let freed = room.notified();
    let err = e.invoke(spec("next", "echo", LONG), request("{}")).await.err().expect("refused");
    assert_eq!(err.status, http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(err.message, "Rate Exceeded.");
    tokio::time::timeout(Duration::from_secs(5), freed).await.expect("the room signal comes when the slot frees");
    assert_eq!(e.counts().2, 0, "signalled after the slot was given back");
    let (_, payload) = answer(&e.invoke(spec("next", "echo", LONG), request("{\"n\":2}")).await.expect("room now"));
    assert_eq!(payload, "{\"n\":2}");
    answer(&busy.await.expect("task").expect("the busy invocation"));
}

/// Reads a streamed answer: the first chunk, then (after releasing the fake) the rest and the end.
async fn streamed(e: &Engine, s: &Arc<EnvSpec>, gate: &str) -> (Vec<Bytes>, RunOutcome) {
    let run = e.invoke(s.clone(), request(&format!("\"{gate}\""))).await.expect("invoke");
    let Ended::Streaming(mut stream) = run.ended else { panic!("expected a stream, got {:?}", run.ended) };
    assert_eq!(stream.content_type.as_deref(), Some("text/plain"));
    // The runtime holds its second write until released: the first chunk came on its own.
    let first = stream.chunk().await.expect("first chunk");
    assert_eq!(&first[..], b"first;");
    sandbox::fake::release(gate);
    let mut chunks = vec![first];
    while let Some(c) = stream.chunk().await {
        chunks.push(c);
    }
    (chunks, stream.end().await.expect("end"))
}

#[tokio::test]
async fn a_streamed_response_arrives_chunk_by_chunk_then_ends() {
    let e = engine(10, 10, LONG);
    let s = spec("st", "stream", LONG);
    let gate = format!("ok-{}", uuid::Uuid::new_v4().simple());
    let (chunks, end) = streamed(&e, &s, &gate).await;
    assert_eq!(chunks, vec![Bytes::from_static(b"first;"), Bytes::from_static(b"last")]);
    assert!(matches!(end.ended, Ended::StreamEnded(StreamEnd::Complete)), "{:?}", end.ended);
    assert!(String::from_utf8_lossy(&end.output).contains("handling"), "the log comes with the end");
    // The environment is healthy and warm again.
    let gate = format!("ok-{}", uuid::Uuid::new_v4().simple());
    let (_, again) = streamed(&e, &s, &gate).await;
    assert!(matches!(again.ended, Ended::StreamEnded(StreamEnd::Complete)));
    assert_eq!(e.counts().0, 1, "one environment served both");
}

#[tokio::test]
async fn a_mid_stream_error_comes_from_the_trailers() {
    let e = engine(10, 10, LONG);
    let s = spec("sf", "stream", LONG);
    let gate = format!("fail-{}", uuid::Uuid::new_v4().simple());
    let (chunks, end) = streamed(&e, &s, &gate).await;
    assert_eq!(chunks, vec![Bytes::from_static(b"first;")]);
    match end.ended {
        Ended::StreamEnded(StreamEnd::Error { error_type, body }) => {
            assert_eq!(error_type.as_deref(), Some("Boom"));
            assert_eq!(&body[..], br#"{"errorType":"Boom","errorMessage":"mid-stream"}"#);
        }
        other => panic!("expected the trailers' error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_past_its_deadline_times_out() {
    let e = engine(10, 10, LONG);
    let s = spec("sh", "stream", Duration::from_millis(300));
    let run = e.invoke(s.clone(), request("\"hang\"")).await.expect("invoke");
    let Ended::Streaming(mut stream) = run.ended else { panic!("expected a stream, got {:?}", run.ended) };
    assert_eq!(stream.chunk().await.as_deref(), Some(&b"first;"[..]));
    assert!(stream.chunk().await.is_none());
    let end = stream.end().await.expect("end");
    assert!(matches!(end.ended, Ended::TimedOut { .. }), "{:?}", end.ended);
}

#[tokio::test]
async fn a_debugged_function_keeps_one_environment_without_timeout_or_ttl() {
    let e = engine(10, 10, Duration::from_millis(150));
    let mut s = EnvSpec::clone(&spec("dbg", "sleep:300", Duration::from_millis(100)));
    s.debug = Some(debug::DebugSpec { port: None });
    let s = Arc::new(s);
    // Two at once: they take turns on one environment, and neither times out (100 ms) while
    // the runtime takes 300 ms (a breakpoint).
    let both = futures_util::future::join(e.invoke(s.clone(), request("{\"n\":1}")), async {
        wait_until("the first debugged invocation is busy", || e.counts().2 == 1).await;
        assert_eq!(e.counts().0, 1, "no second environment for the waiting invocation");
        e.invoke(s.clone(), request("{\"n\":2}")).await
    })
    .await;
    let (env1, _) = answer(&both.0.expect("first"));
    let (env2, _) = answer(&both.1.expect("second"));
    assert_eq!(env1, env2, "one environment served both");
    // An ordinary function's idle environment expires; the debugged one is kept.
    e.invoke(spec("plain", "echo", LONG), request("{}")).await.expect("plain");
    assert_eq!(e.counts().0, 2);
    wait_until("the ordinary idle environment expires", || e.counts().0 == 1).await;
    let (env3, _) = answer(&e.invoke(s.clone(), request("{}")).await.expect("third"));
    assert_eq!(env3, env1, "the debugged environment outlived the TTL");
}

/// The same name debugged in two regions: on a port of RustStack's they take turns on it (the
/// second's environment displaces the first's); with none (a custom runtime's own debugger)
/// each function has its own turn.
#[tokio::test]
async fn debug_turns_are_per_port_else_per_function() {
    let e = engine(10, 10, LONG);
    let debugged = |name: &str, region: &str, port: Option<u16>| {
        let mut s = EnvSpec::clone(&spec(name, "sleep:300", LONG));
        s.region = region.into();
        s.key = format!("{name}:$LATEST:{region}");
        s.debug = Some(debug::DebugSpec { port });
        Arc::new(s)
    };
    let (us, eu) = (debugged("own", "us-east-1", None), debugged("own", "eu-west-1", None));
    let both = futures_util::future::join(e.invoke(us.clone(), request("{}")), async {
        wait_until("us-east-1's invocation is busy", || e.counts().2 == 1).await;
        let eu = e.invoke(eu.clone(), request("{}"));
        // Its own turn: it runs while us-east-1's does.
        futures_util::future::join(eu, wait_until("both are busy at once", || e.counts().2 == 2)).await.0
    })
    .await;
    answer(&both.0.expect("us-east-1"));
    answer(&both.1.expect("eu-west-1"));
    assert_eq!(e.counts().0, 2, "one environment each");
    let (us, eu) = (debugged("port", "us-east-1", Some(7000)), debugged("port", "eu-west-1", Some(7000)));
    let (env_us, _) = answer(&e.invoke(us.clone(), request("{}")).await.expect("us-east-1 on the port"));
    assert_eq!(e.counts().0, 3);
    let (env_eu, _) = answer(&e.invoke(eu.clone(), request("{}")).await.expect("eu-west-1 on the port"));
    assert_ne!(env_us, env_eu);
    assert_eq!(e.counts().0, 3, "eu-west-1's environment took the port from us-east-1's idle one");
}

/// A response answered early: the caller has its answer while the settling (the output, the
/// `then` that writes the log) is held back; each settled run has its own output, in order,
/// and the next invocation on the environment waited for the previous settling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_comes_before_its_settling() {
    let e = engine(10, 10, LONG);
    let s = spec("early", "echo", LONG);
    let settled = Arc::new(parking_lot::Mutex::new(Vec::new()));
    for n in 0..5 {
        let req = request(&format!("{{\"n\":{n}}}"));
        let id = req.request_id.clone();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let log = settled.clone();
        let early = |o: &Outcome| match o {
            Outcome::Response { body, .. } => Some(body.clone()),
            _ => None,
        };
        let then = move |run: Result<RunOutcome, AwsError>| {
            // Held until the caller has had its answer.
            let went = go_rx.recv_timeout(Duration::from_secs(10)).is_ok();
            let run = run?;
            log.lock().push((id, went, String::from_utf8_lossy(&run.output).into_owned()));
            Ok(Bytes::new())
        };
        let body = e.invoke_early(s.clone(), req, early, then).await.expect("answer");
        go_tx.send(()).expect("the settling waits for the go-ahead");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["payload"], format!("{{\"n\":{n}}}"));
    }
    wait_until("every run is settled", || settled.lock().len() == 5).await;
    for (id, went, output) in settled.lock().iter() {
        assert!(went, "the settling of {id} ran after its answer");
        assert_eq!(output, &format!("handling {id}\n"), "each run's output is its own");
    }
    assert_eq!(e.counts(), (1, 1, 0), "one environment served them all");
}

/// `early` declining (None) or an end that is not a response: the run is settled first and
/// `then`'s result is the answer.
#[tokio::test]
async fn a_declined_early_answer_is_settled_first() {
    let e = engine(10, 10, LONG);
    let out = e
        .invoke_early(
            spec("late", "echo", LONG),
            request("{}"),
            |_: &Outcome| None::<String>,
            |run| Ok(String::from_utf8_lossy(&run?.output).into_owned()),
        )
        .await
        .expect("answer");
    assert!(out.starts_with("handling "), "then's result, with the output: {out:?}");
    let died = e
        .invoke_early(
            spec("dies", "exit", LONG),
            request("{}"),
            |_: &Outcome| Some("early".to_string()),
            |run| Ok(format!("{:?}", run?.ended)),
        )
        .await
        .expect("answer");
    assert!(died.starts_with("Died"), "{died}");
}

/// The peak RSS a runtime reports with its result (`X-Ruststack-Max-Rss-Kb`, the bundled
/// bootstrap when forked) is kept for that result only; a result without it reports none.
#[tokio::test]
async fn a_reported_peak_is_kept_for_its_result() {
    let ip = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);
    let ep = Endpoint::new("rss");
    let l = runtime_api::serve(ip, ep.clone()).await.expect("listen");
    let client = FakeClient::new(l.addr);
    for (id, header) in [("one", Some("2048")), ("two", None)] {
        let (started, _) = tokio::sync::oneshot::channel();
        let (done, rx) = tokio::sync::oneshot::channel();
        let inv = Invocation {
            request_id: id.to_string(),
            payload: Bytes::from_static(b"{}"),
            invoked_arn: "arn".into(),
            trace_id: "t".into(),
            client_context: None,
            cognito_identity: None,
            tenant_id: None,
            timeout: LONG,
            started,
            done,
        };
        assert!(ep.deliver(inv).is_ok());
        assert_eq!(client.next().await.0, id);
        let mut post = client.client.post(format!("{}/{id}/response", client.base)).body("{}");
        if let Some(h) = header {
            post = post.header("X-Ruststack-Max-Rss-Kb", h);
        }
        assert_eq!(post.send().await.expect("post").status(), reqwest::StatusCode::ACCEPTED);
        assert!(matches!(rx.await, Ok(Outcome::Response { .. })));
        let want = header.map(|kb| kb.parse::<u64>().expect("kb") * 1024);
        assert_eq!(ep.take_reported_rss(), want, "{id}");
        assert_eq!(ep.take_reported_rss(), None, "taken once");
    }
}
