//! One call of a script: its keys and arguments kept apart, sent as a plain
//! `EVALSHA` (whose `NOSCRIPT` answers, and on a cluster redirections, this
//! crate handles itself).

use redis::{Cmd, Script};

/// A script with its keys and arguments.
pub(crate) struct ScriptCall<'a> {
    script: &'a Script,
    keys: Vec<String>,
    args: Vec<String>,
}

impl<'a> ScriptCall<'a> {
    /// A call of `script` without keys or arguments yet.
    pub(crate) fn new(script: &'a Script) -> Self {
        ScriptCall { script, keys: Vec::new(), args: Vec::new() }
    }

    /// Appends a key.
    pub(crate) fn key(&mut self, key: String) -> &mut Self {
        self.keys.push(key);
        self
    }

    /// Appends an argument.
    pub(crate) fn arg(&mut self, arg: impl ToString) -> &mut Self {
        self.args.push(arg.to_string());
        self
    }

    /// The script.
    pub(crate) fn script(&self) -> &'a Script {
        self.script
    }

    /// `EVALSHA <sha1> <key count> <keys…> <args…>`.
    pub(crate) fn evalsha(&self) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evalsha_puts_the_keys_before_the_arguments() {
        let script = Script::new("return 1");
        let mut call = ScriptCall::new(&script);
        call.key("a".to_owned()).arg(1).key("b".to_owned()).arg("x");
        let packed = String::from_utf8(call.evalsha().get_packed_command()).unwrap();
        let expected = format!(
            "*7\r\n$7\r\nEVALSHA\r\n$40\r\n{}\r\n$1\r\n2\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\n1\r\n$1\r\nx\r\n",
            script.get_hash()
        );
        assert_eq!(packed, expected);
    }
}
