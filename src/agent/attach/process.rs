//! Sessions of the process runtime: the command runs as a host process with
//! the pod's environment and directory, in its own process group, with
//! pipes for stdin/stdout/stderr, or with a pseudo terminal when a TTY is
//! asked for (its own session, the terminal as its controlling one).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{AttachRequest, Session, SessionInput, SessionIo, SessionOutput, session};
use crate::agent::runtime::RuntimeError;

/// How long output still drains after the command exits (a background child
/// may hold its pipes open forever).
const DRAIN: Duration = Duration::from_secs(1);

/// The terminal size before the caller sends its own.
const DEFAULT_SIZE: (u16, u16) = (80, 24);

fn command(argv: &[String], env: &[(String, String)], workdir: Option<&PathBuf>) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().envs(env.iter().map(|(k, v)| (k, v))).kill_on_drop(true);
    if let Some(w) = workdir {
        cmd.current_dir(w);
    }
    cmd
}

/// Starts `argv` for a session.
pub fn attach(
    argv: &[String],
    env: &[(String, String)],
    workdir: Option<&PathBuf>,
    req: &AttachRequest,
) -> Result<Session, RuntimeError> {
    if req.tty {
        with_terminal(argv, env, workdir, req.stdin, req.size.unwrap_or(DEFAULT_SIZE))
    } else {
        with_pipes(argv, env, workdir, req.stdin)
    }
}

fn with_pipes(
    argv: &[String],
    env: &[(String, String)],
    workdir: Option<&PathBuf>,
    stdin: bool,
) -> Result<Session, RuntimeError> {
    let mut cmd = command(argv, env, workdir);
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| crate::agent::process::spawn_error("ExecError", &argv[0], &e))?;
    let (session, io) = session();
    let input: Option<Box<dyn AsyncWrite + Send + Unpin>> = child.stdin.take().map(|s| Box::new(s) as _);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, io.output.clone(), SessionOutput::Stdout)));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, io.output.clone(), SessionOutput::Stderr)));
    }
    tokio::spawn(run(child, input, pumps, io, None));
    Ok(session)
}

fn with_terminal(
    argv: &[String],
    env: &[(String, String)],
    workdir: Option<&PathBuf>,
    stdin: bool,
    (width, height): (u16, u16),
) -> Result<Session, RuntimeError> {
    let pty_err = |e: nix::Error| RuntimeError::new("ExecError", format!("cannot open a terminal: {e}"));
    let io_err = |e: std::io::Error| RuntimeError::new("ExecError", format!("cannot open a terminal: {e}"));
    let size = winsize(width, height);
    let pty = nix::pty::openpty(Some(&size), None).map_err(pty_err)?;
    let mut cmd = command(argv, env, workdir);
    cmd.stdin(Stdio::from(pty.slave.try_clone().map_err(io_err)?))
        .stdout(Stdio::from(pty.slave.try_clone().map_err(io_err)?))
        .stderr(Stdio::from(pty.slave));
    // SAFETY: between fork and exec this calls only async-signal-safe
    // functions (setsid, ioctl) and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            // A new session (and process group) whose controlling terminal is
            // the pseudo terminal: job control and ^C work as in a shell.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| crate::agent::process::spawn_error("ExecError", &argv[0], &e))?;
    // The parent's copies of the terminal's far end must go, or reading the
    // near end never sees the end of the command's output.
    drop(cmd);
    let reader = tokio::fs::File::from_std(std::fs::File::from(pty.master.try_clone().map_err(io_err)?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(pty.master.try_clone().map_err(io_err)?));
    let (session, io) = session();
    let pumps = vec![tokio::spawn(pump(reader, io.output.clone(), SessionOutput::Stdout))];
    let input: Option<Box<dyn AsyncWrite + Send + Unpin>> = stdin.then(|| Box::new(writer) as _);
    tokio::spawn(run(child, input, pumps, io, Some(pty.master)));
    Ok(session)
}

fn winsize(width: u16, height: u16) -> nix::pty::Winsize {
    nix::pty::Winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 }
}

/// Copies a command's output into the session until it ends. (A terminal's
/// near end reports EIO once the far end is closed: that is its end too.)
async fn pump<R: AsyncRead + Unpin>(mut from: R, to: mpsc::Sender<SessionOutput>, wrap: fn(Bytes) -> SessionOutput) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(wrap(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Feeds the command its input until it exits, then reports its exit code
/// after the last of its output. If the caller goes away first, the
/// command's process group is killed.
async fn run(
    mut child: Child,
    mut stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pumps: Vec<tokio::task::JoinHandle<()>>,
    io: SessionIo,
    terminal: Option<OwnedFd>,
) {
    let SessionIo { mut input, output, exit } = io;
    drop(output);
    let group = child.id().map(|p| Pid::from_raw(p as i32));
    let mut caller = true;
    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            msg = input.recv(), if caller => match msg {
                Some(SessionInput::Stdin(b)) => super::feed(&mut stdin, &b).await,
                Some(SessionInput::CloseStdin) => {
                    if let Some(mut s) = stdin.take() {
                        // A terminal has no end of file of its own: ^D is one.
                        if terminal.is_some() {
                            let _ = s.write_all(&[4]).await;
                            let _ = s.flush().await;
                        }
                    }
                }
                Some(SessionInput::Resize { width, height }) => {
                    if let Some(t) = &terminal {
                        let size = winsize(width, height);
                        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
                        unsafe { libc::ioctl(t.as_raw_fd(), libc::TIOCSWINSZ as _, &size) };
                    }
                }
                None => {
                    caller = false;
                    stdin = None;
                    if let Some(g) = group {
                        let _ = killpg(g, Signal::SIGKILL);
                    }
                }
            },
        }
    };
    drop(stdin);
    let drained = async {
        for p in pumps {
            let _ = p.await;
        }
    };
    let _ = tokio::time::timeout(DRAIN, drained).await;
    let code = status.map(crate::agent::process::exit_code).map_err(|e| e.to_string());
    let _ = exit.send(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    async fn collect(mut s: Session) -> (String, String, i32) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(o) = s.output.recv().await {
            match o {
                SessionOutput::Stdout(b) => out.extend_from_slice(&b),
                SessionOutput::Stderr(b) => err.extend_from_slice(&b),
            }
        }
        let code = s.exit.await.expect("exit sent").expect("waited");
        (String::from_utf8_lossy(&out).into(), String::from_utf8_lossy(&err).into(), code)
    }

    #[tokio::test]
    async fn pipes_carry_stdin_stdout_stderr_and_the_exit_code() {
        let req = AttachRequest { command: sh("cat; echo oops >&2; exit 3"), stdin: true, tty: false, size: None };
        let s = attach(&req.command, &[], None, &req).unwrap();
        s.input.send(SessionInput::Stdin(Bytes::from_static(b"hello\n"))).await.unwrap();
        s.input.send(SessionInput::CloseStdin).await.unwrap();
        let (out, err, code) = collect(s).await;
        assert_eq!((out.as_str(), err.as_str(), code), ("hello\n", "oops\n", 3));
    }

    #[tokio::test]
    async fn a_terminal_is_the_commands_controlling_terminal_and_takes_the_callers_size() {
        let req = AttachRequest {
            command: sh("stty size; read line; stty size; tty; echo got $line"),
            stdin: true,
            tty: true,
            size: Some((90, 20)),
        };
        let mut s = attach(&req.command, &[], None, &req).unwrap();
        // The size asked for from the start, then a resize.
        let mut first = String::new();
        while !first.contains('\n') {
            let Some(SessionOutput::Stdout(b)) = s.output.recv().await else { panic!("no output: {first:?}") };
            first.push_str(&String::from_utf8_lossy(&b));
        }
        assert_eq!(first.trim(), "20 90", "the size asked for from the start");
        s.input.send(SessionInput::Resize { width: 100, height: 30 }).await.unwrap();
        s.input.send(SessionInput::Stdin(Bytes::from_static(b"hi\n"))).await.unwrap();
        let (out, err, code) = collect(s).await;
        assert_eq!((err.as_str(), code), ("", 0));
        assert!(out.contains("30 100"), "{out:?}");
        assert!(out.contains("/dev/pts/"), "{out:?}");
        assert!(out.contains("got hi"), "{out:?}");
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_kills_the_command() {
        let req = AttachRequest { command: sh("echo $$; exec sleep 600"), stdin: false, tty: false, size: None };
        let mut s = attach(&req.command, &[], None, &req).unwrap();
        let Some(SessionOutput::Stdout(pid)) = s.output.recv().await else { panic!("no pid") };
        let pid: i32 = String::from_utf8_lossy(&pid).trim().parse().unwrap();
        let Session { input, exit, .. } = s;
        drop(input);
        let code = exit.await.unwrap().unwrap();
        assert_eq!(code, 128 + 9);
        assert!(nix::sys::signal::kill(Pid::from_raw(pid), None).is_err(), "process {pid} still runs");
    }
}
