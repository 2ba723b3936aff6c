//! When is `sh -c "<string>"` just a command? When the string needs nothing a
//! shell does: no quoting, expansion, redirection, pipes, globs or builtins.
//! Then it can run directly, which keeps the shim alive past a protected
//! `/bin/sh` (`npm run dev` is `sh -c "vite"`).

/// A command line that needs no shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellCommand {
    /// Leading `NAME=value` words, for the command's environment.
    pub assignments: Vec<String>,
    /// The program and its arguments.
    pub words: Vec<String>,
}

/// Words a shell handles itself: running them as programs would be wrong.
const BUILTINS: &[&str] = &[
    ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done", "elif", "else", "esac",
    "eval", "exit", "export", "fg", "fi", "for", "function", "getopts", "hash", "if", "jobs", "local", "read",
    "readonly", "return", "select", "set", "shift", "source", "then", "time", "times", "trap", "type", "ulimit",
    "umask", "unalias", "unset", "until", "wait", "while",
];

/// Parses `command` if it is a plain command; `None` if it needs a shell.
pub fn parse_simple_command(command: &str) -> Option<ShellCommand> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,^".contains(c) || c == ' ' || c == '\t';
    if !command.chars().all(plain) {
        return None;
    }
    let mut words = command.split_whitespace().peekable();
    let mut assignments = Vec::new();
    while let Some(w) = words.peek() {
        match w.split_once('=') {
            Some((k, _)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                assignments.push((*w).to_owned());
                words.next();
            }
            _ => break,
        }
    }
    if words.peek() == Some(&"exec") {
        words.next();
    }
    let words: Vec<String> = words.map(str::to_owned).collect();
    let first = words.first()?;
    if BUILTINS.contains(&first.as_str()) || first.contains('=') {
        return None;
    }
    Some(ShellCommand { assignments, words })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Option<Vec<String>> {
        parse_simple_command(s).map(|c| c.words)
    }

    #[test]
    fn plain_commands_run_directly() {
        assert_eq!(words("vite"), Some(vec!["vite".into()]));
        assert_eq!(
            words("  node server.js --port=3000 "),
            Some(vec!["node".into(), "server.js".into(), "--port=3000".into()])
        );
        assert_eq!(words("exec next dev"), Some(vec!["next".into(), "dev".into()]));
        let c = parse_simple_command("NODE_ENV=development PORT=3000 node ./bin/www").unwrap();
        assert_eq!(c.assignments, ["NODE_ENV=development", "PORT=3000"]);
        assert_eq!(c.words, ["node", "./bin/www"]);
    }

    #[test]
    fn anything_a_shell_does_needs_the_shell() {
        for s in [
            "",
            "   ",
            "a && b",
            "a | b",
            "a; b",
            "echo $HOME",
            "echo \"x\"",
            "echo 'x'",
            "a > log",
            "ls *.js",
            "cd web",
            "export X=1",
            "X=1",
            "a `b`",
            "a $(b)",
            "~/bin/x",
            "a\\ b",
            "if true",
            "a &",
            "echo {a,b}",
        ] {
            assert_eq!(parse_simple_command(s), None, "{s:?}");
        }
    }
}
