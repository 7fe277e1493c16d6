//! Builds `ruststack-stdio` (src/engine/sandbox/docker/stdio.c), the static entrypoint wrapper
//! of Docker containers, with the C compiler (`$RUSTSTACK_STDIO_CC`, else `$CC`, else `cc`)
//! and a static libc. Where that
//! fails (no compiler, no static libc, a cross build) the embedded helper is empty and the
//! Docker executor falls back to its shell wrapper and docker attach (logged at run time).

use std::path::PathBuf;
use std::process::Command;

const SRC: &str = "src/engine/sandbox/docker/stdio.c";

fn main() {
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-env-changed=RUSTSTACK_STDIO_CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("ruststack-stdio");
    let _ = std::fs::remove_file(&out);
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    let built = if target != host || !target.contains("linux") {
        Err(format!("not built for {target} from {host}"))
    } else {
        let cc = std::env::var("RUSTSTACK_STDIO_CC").or_else(|_| std::env::var("CC")).unwrap_or_else(|_| "cc".into());
        match Command::new(&cc).args(["-static", "-Os", "-s", "-o"]).arg(&out).arg(SRC).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => {
                Err(format!("{cc} -static failed: {}", String::from_utf8_lossy(&o.stderr).trim().replace('\n', "; ")))
            }
            Err(e) => Err(format!("cannot run {cc}: {e}")),
        }
    };
    if let Err(why) = built {
        println!("cargo:warning=ruststack-stdio not built ({why}): Docker output falls back to attach");
        let _ = std::fs::remove_file(&out);
        if let Err(e) = std::fs::write(&out, b"") {
            panic!("cannot write {}: {e}", out.display());
        }
    }
}
