//! What a hostile or broken plugin does, on request: crash in every way a process can, and try
//! every act the sandbox of an isolated plugin forbids. In process these take diffy down or
//! succeed; isolated, a crash is one line and a forbidden act fails inside the plugin.

use diffy_plugin_api::{Result, anyhow};

/// The faults `commit` knows, as the CLI namespace's subcommands.
pub const FAULTS: &[&str] = &[
    "segfault",
    "abort",
    "stack-overflow",
    "out-of-memory",
    "write",
    "read",
    "connect",
    "spawn",
    "hang",
];

/// Whether `name` is one of [`FAULTS`].
pub fn is_fault(name: &str) -> bool {
    FAULTS.contains(&name)
}

/// Commit the fault `name`; `arg` is a path (write, read) or a port (connect).
pub fn commit(name: &str, arg: Option<&str>) -> Result<()> {
    match name {
        "segfault" => segfault(),
        "abort" => std::process::abort(),
        "stack-overflow" => {
            recurse(std::hint::black_box(1));
            Ok(())
        }
        "out-of-memory" => {
            // Far more than the sandbox's address space: the allocation fails and Rust aborts.
            let huge = std::hint::black_box(64usize << 30);
            let memory = vec![1u8; huge];
            std::hint::black_box(&memory);
            Ok(())
        }
        "write" => {
            let path = arg.ok_or_else(|| anyhow::anyhow!("write needs a path"))?;
            std::fs::write(path, "written by the fixture\n")
                .map_err(|e| anyhow::anyhow!("cannot write {path}: {e}"))
        }
        "read" => {
            let path = arg.ok_or_else(|| anyhow::anyhow!("read needs a path"))?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
            println!("{}", text.trim_end());
            Ok(())
        }
        "connect" => {
            let port: u16 = arg
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("connect needs a port"))?;
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| anyhow::anyhow!("cannot connect to 127.0.0.1:{port}: {e}"))
        }
        "spawn" => std::process::Command::new("/bin/sh")
            .args(["-c", "true"])
            .status()
            .map(drop)
            .map_err(|e| anyhow::anyhow!("cannot run /bin/sh: {e}")),
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        other => anyhow::bail!("no fault named {other}"),
    }
}

/// A real invalid memory access, not a signal sent to itself.
#[allow(unsafe_code)]
fn segfault() -> Result<()> {
    let address = std::hint::black_box(std::ptr::null_mut::<u64>());
    // SAFETY: none — writing through a null pointer is the fault this fixture exists to commit;
    // it only ever runs when a test asks for it.
    unsafe { address.write_volatile(42) };
    Ok(())
}

/// Recurse until the stack is gone.
#[allow(unconditional_recursion, reason = "overflowing the stack is the point")]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}
