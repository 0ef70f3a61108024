//! Sessions of the Docker runtime: `docker exec` through the engine's API,
//! attached (its hijacked connection carries stdin and output).

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{ResizeExecOptions, StartExecOptions, StartExecResults};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use super::{AttachRequest, Session, SessionInput, SessionIo, SessionOutput, session};
use crate::agent::runtime::RuntimeError;

fn err(e: bollard::errors::Error) -> RuntimeError {
    RuntimeError::new("ExecError", format!("Docker engine: {e}"))
}

/// Starts `req` in container `id`.
pub async fn attach(d: Docker, id: &str, req: &AttachRequest) -> Result<Session, RuntimeError> {
    let config = bollard::models::ExecConfig {
        cmd: Some(req.command.clone()),
        attach_stdin: Some(req.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(req.tty),
        console_size: req.size.filter(|_| req.tty).map(|(w, h)| vec![usize::from(h), usize::from(w)]),
        ..Default::default()
    };
    let exec = d.create_exec(id, config).await.map_err(err)?;
    let opts = StartExecOptions { detach: false, tty: req.tty, output_capacity: None };
    let StartExecResults::Attached { mut output, input } = d.start_exec(&exec.id, Some(opts)).await.map_err(err)?
    else {
        return Err(RuntimeError::new("ExecError", "the Docker engine did not attach to the command"));
    };
    // Engines before API 1.42 ignore ConsoleSize, and resize an exec only
    // once its process runs: the size is set as soon as it does (a command
    // that asks at once may still see 0x0).
    if let Some((width, height)) = req.size.filter(|_| req.tty) {
        let (d, id) = (d.clone(), exec.id.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while tokio::time::Instant::now() < deadline {
                let running = d.inspect_exec(&id).await.is_ok_and(|i| i.running == Some(true));
                if running && d.resize_exec(&id, ResizeExecOptions { height, width }).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let (session, io) = session();
    let SessionIo { input: mut from_caller, output: to_caller, exit } = io;
    let pump = tokio::spawn(async move {
        while let Some(Ok(out)) = output.next().await {
            let o = match out {
                LogOutput::StdErr { message } => SessionOutput::Stderr(message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => SessionOutput::Stdout(message),
                LogOutput::StdIn { .. } => continue,
            };
            if to_caller.send(o).await.is_err() {
                return;
            }
        }
    });
    let exec_id = exec.id.clone();
    tokio::spawn(async move {
        let mut stdin = Some(input);
        let mut pump = pump;
        let ended = loop {
            tokio::select! {
                _ = &mut pump => break true,
                msg = from_caller.recv() => match msg {
                    Some(SessionInput::Stdin(b)) => super::feed(&mut stdin, &b).await,
                    Some(SessionInput::CloseStdin) => {
                        if let Some(mut s) = stdin.take() {
                            let _ = s.shutdown().await;
                        }
                    }
                    Some(SessionInput::Resize { width, height }) => {
                        let _ = d.resize_exec(&exec_id, ResizeExecOptions { height, width }).await;
                    }
                    None => break false,
                },
            }
        };
        if !ended {
            // The caller went away: the engine cannot stop an exec, so its
            // process is killed by pid (the engine reports it host-side).
            if let Ok(i) = d.inspect_exec(&exec_id).await
                && let Some(pid) = i.pid.filter(|p| *p > 0)
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
            }
            return;
        }
        // The output ends as the command does; the engine may take a moment
        // to record its exit code.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let code = loop {
            match d.inspect_exec(&exec_id).await {
                Ok(i) if i.running != Some(true) => break Ok(i.exit_code.unwrap_or(-1) as i32),
                Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(_) => break Err("the command's output ended but the engine says it still runs".to_string()),
                Err(e) => break Err(format!("Docker engine: {e}")),
            }
        };
        let _ = exit.send(code);
    });
    Ok(session)
}
