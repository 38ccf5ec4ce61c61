//! The client side: [`call`] sends one request to a gateway's control socket after checking that
//! the socket is this account's, and [`socket_of_config`] finds the socket from `gateway.toml`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::{ControlError, ErrorKind};

/// The effective uid of this process (the owner of `/proc/self`), without unsafe code.
pub fn effective_uid() -> std::io::Result<u32> {
    std::fs::metadata("/proc/self").map(|m| m.uid())
}

/// The response line for `result`: `{"ok":true,"result":…}` or
/// `{"ok":false,"kind":"…","error":"…"}`.
pub fn response(result: Result<Value, ControlError>) -> Value {
    match result {
        Ok(result) => serde_json::json!({"ok": true, "result": result}),
        Err(e) => serde_json::json!({"ok": false, "kind": e.kind, "error": e.message}),
    }
}

/// Reads a response line back into the result it carries.
pub fn parse_response(line: &str) -> Result<Value, ControlError> {
    let v: Value = serde_json::from_str(line).map_err(|_| {
        ControlError::new(
            ErrorKind::Unreachable,
            "the gateway closed the control connection without an answer",
        )
    })?;
    if v["ok"] == Value::Bool(true) {
        return Ok(v["result"].clone());
    }
    let message = v["error"].as_str().unwrap_or("unknown error").to_owned();
    let kind = serde_json::from_value(v["kind"].clone())
        .unwrap_or_else(|_| ErrorKind::of_message(&message));
    Err(ControlError { kind, message })
}

/// Sends one request to the gateway at `socket` and returns its result, or its typed error.
///
/// Nothing is written unless the socket file belongs to this account and the process serving it
/// runs as this account (checked with `SO_PEERCRED` after connecting). Every failure to reach the
/// gateway is [`ErrorKind::Unreachable`].
pub async fn call(socket: &Path, request: &impl Serialize) -> Result<Value, ControlError> {
    let unreachable = |m: String| ControlError::new(ErrorKind::Unreachable, m);
    let euid = effective_uid().map_err(|e| {
        unreachable(format!(
            "cannot tell which account this is (/proc/self: {e}); nothing was sent"
        ))
    })?;
    let refuse = |what: &str, uid: u32| {
        unreachable(format!(
            "refusing the control socket {}: it is {what} uid {uid}, not by this account (uid {euid}), so it is not this account's gateway; nothing was sent. Run the command as the account that runs the gateway, and check the owner and mode of the data directory",
            socket.display()
        ))
    };
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        if meta.uid() != euid {
            return Err(refuse("owned by", meta.uid()));
        }
    }
    let mut stream = UnixStream::connect(socket).await.map_err(|err| {
        unreachable(format!(
            "cannot reach the gateway's control socket {}: {err}; is `tsunagi gateway run` running with this configuration?",
            socket.display()
        ))
    })?;
    let peer = stream.peer_cred().map_err(|e| {
        unreachable(format!(
            "refusing the control socket {}: cannot tell which account serves it ({e}); nothing was sent",
            socket.display()
        ))
    })?;
    if peer.uid() != euid {
        return Err(refuse("served by", peer.uid()));
    }
    let mut line = serde_json::to_vec(request)
        .map_err(|e| ControlError::invalid(format!("the request cannot be written: {e}")))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .await
        .map_err(|e| unreachable(format!("control socket: {e}")))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .await
        .map_err(|e| unreachable(format!("control socket: {e}")))?;
    parse_response(&reply)
}

/// The control socket of the gateway that `config` (a `gateway.toml`) configures:
/// `data_dir/control.sock`, a relative `data_dir` taken from the file's directory.
pub fn socket_of_config(config: &Path) -> Result<PathBuf, String> {
    #[derive(serde::Deserialize)]
    struct DataDir {
        data_dir: PathBuf,
    }
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
    let DataDir { data_dir } = toml::from_str(&text).map_err(|e| {
        format!(
            "{}: {}",
            config.display(),
            e.message().trim_end().replace('\n', " ")
        )
    })?;
    let base = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if data_dir.is_absolute() {
        data_dir
    } else {
        base.join(data_dir)
    };
    Ok(dir.join("control.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip_with_their_kind() {
        let ok = response(Ok(serde_json::json!({"a": 1})));
        assert_eq!(
            parse_response(&ok.to_string()).unwrap(),
            serde_json::json!({"a": 1})
        );
        let err = response(Err(ControlError::not_found("no outbox entry 00")));
        let back = parse_response(&err.to_string()).unwrap_err();
        assert_eq!(back.kind, ErrorKind::NotFound);
        assert_eq!(back.message, "no outbox entry 00");
        // An older gateway's answer, without a kind, is sorted by its wording.
        let old = r#"{"ok":false,"error":"refused: no consent covers it"}"#;
        assert_eq!(parse_response(old).unwrap_err().kind, ErrorKind::Refused);
        assert_eq!(parse_response("").unwrap_err().kind, ErrorKind::Unreachable);
    }

    #[tokio::test]
    async fn an_absent_socket_is_unreachable() {
        let dir = std::env::temp_dir().join(format!("tsunagi-control-{}", std::process::id()));
        let e = call(
            &dir.join("control.sock"),
            &serde_json::json!({"op": "status"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert!(e.message.contains("cannot reach"), "{}", e.message);
    }

    #[test]
    fn finds_the_socket_from_the_configuration() {
        let dir = std::env::temp_dir().join(format!("tsunagi-control-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("gateway.toml");
        std::fs::write(&cfg, "org = \"x\"\ndata_dir = \"data\"\n[other]\nk = 1\n").unwrap();
        assert_eq!(
            socket_of_config(&cfg).unwrap(),
            dir.join("data/control.sock")
        );
        std::fs::write(&cfg, "org = \"x\"\n").unwrap();
        let e = socket_of_config(&cfg).unwrap_err();
        assert!(e.contains("data_dir"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
