//! `ruststack attach`, the client: asks a running server (over HTTP, `/_ruststack/attach`)
//! for a Runtime API endpoint of a function's own, runs the given runtime command against it,
//! and holds the attachment open until the runtime exits.

use serde_json::{Value, json};

use crate::config::AttachArgs;

pub async fn run(args: AttachArgs) -> Result<u8, String> {
    if args.command.is_empty() && !args.print_env {
        return Err("give the runtime command after `--` (or use --print-env)".into());
    }
    let base = args.endpoint.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    let fname = percent_encoding::utf8_percent_encode(&args.function, percent_encoding::NON_ALPHANUMERIC).to_string();
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let resp = client
        .post(format!("{base}/_ruststack/attach/{fname}"))
        .json(&json!({"keep_timeout": args.keep_timeout, "cwd": cwd}))
        .send()
        .await
        .map_err(|e| format!("cannot reach RustStack at {base}: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| format!("bad answer from RustStack: {e}"))?;
    if !status.is_success() {
        let msg = body.get("message").or_else(|| body.get("Message")).and_then(Value::as_str).unwrap_or("");
        return Err(format!("attach refused ({status}): {msg}"));
    }
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let runtime_api = body["runtime_api"].as_str().unwrap_or_default().to_string();
    let env: Vec<(String, String)> = body["env"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();

    // Hold the attachment open: if this process dies, the server notices and detaches.
    let hold_url = format!("{base}/_ruststack/attach/{fname}/hold?id={id}");
    let hold_client = client.clone();
    let hold = tokio::spawn(async move { hold_client.get(hold_url).send().await.map(|_| ()) });

    eprintln!(
        "ruststack attach: {} attached (runtime API {runtime_api}, timeout {})",
        args.function,
        if args.keep_timeout { "kept" } else { "suspended" }
    );
    let code = if args.print_env {
        for (k, v) in &env {
            println!("{k}={v}");
        }
        eprintln!("ruststack attach: holding the attachment; press Ctrl-C to detach");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = hold => { eprintln!("ruststack attach: the server ended the attachment"); }
        }
        0
    } else {
        let mut cmd = tokio::process::Command::new(&args.command[0]);
        cmd.args(&args.command[1..]).envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", args.command[0]))?;
        eprintln!("ruststack attach: running {:?}; invocations of {} now go to it", args.command, args.function);
        let code = tokio::select! {
            s = child.wait() => s.ok().and_then(|s| s.code()).unwrap_or(1),
            _ = tokio::signal::ctrl_c() => {
                let _ = child.kill().await;
                130
            }
        };
        eprintln!("ruststack attach: runtime exited ({code}); detaching");
        code
    };
    let _ = client.delete(format!("{base}/_ruststack/attach/{fname}?id={id}")).send().await;
    Ok(code.clamp(0, 255) as u8)
}
