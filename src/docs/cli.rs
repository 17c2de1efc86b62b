//! The command-line reference: every command of `report-operator` and of the kubectl plugin
//! with its flags, their environment variables, defaults and values, read from clap.

use clap::{Arg, ArgAction, Command};

use super::{Commands, GENERATED, Page, cell, code};

pub fn page(commands: &Commands) -> Page {
    let mut md = format!(
        "{GENERATED}\n\n# Command line\n\n\
         One binary, `report-operator`. Started under the name `kubectl-report` (a copy or a \
         link on your PATH), it is the kubectl plugin `kubectl report`, whose commands are also \
         `report-operator report …` ([kubectl report](../kubectl-report.md)). A flag with an \
         environment variable takes its value from it when the flag is not given.\n\n"
    );
    // `report-operator report` is the plugin under another name: its commands are told once,
    // under `kubectl report`.
    let plugin_name = commands
        .plugin
        .get_bin_name()
        .unwrap_or(commands.plugin.get_name());
    let same = (
        format!("{} report", commands.operator.get_name()),
        plugin_name.to_string(),
    );
    command(&mut md, &commands.operator, &[], 2, &same);
    command(&mut md, &commands.plugin, &[], 2, &same);
    Page {
        file: "cli.md".into(),
        title: "Command line".into(),
        summary: "every command and flag of `report-operator` and `kubectl report`, with their \
                  environment variables and defaults"
            .into(),
        markdown: md,
    }
}

/// A section for `cmd` (its heading at `level`) and then for each of its subcommands.
/// `inherited` are the global flags of the commands above it; the subcommands of `same.0` are
/// those of `same.1`, told there.
fn command(md: &mut String, cmd: &Command, inherited: &[Arg], level: usize, same: &(String, String)) {
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
    md.push_str(&format!("{} {}\n\n", "#".repeat(level), code(&name)));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        md.push_str(&format!(
            "{}\n\n",
            super::paragraphs(&about.to_string()).join("\n\n")
        ));
    }
    let args: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    let subcommands: Vec<&Command> = cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
    md.push_str(&format!(
        "```text\n{}\n```\n\n",
        usage(&name, &args, inherited, &subcommands)
    ));
    if !args.is_empty() {
        md.push_str(
            "| argument | environment variable | default | values | description |\n|---|---|---|---|---|\n",
        );
        for arg in &args {
            md.push_str(&row(arg));
        }
        md.push('\n');
    }
    if !inherited.is_empty() {
        let flags: Vec<String> = inherited.iter().map(|a| code(&flag(a))).collect();
        md.push_str(&format!("Also takes {} (above).\n\n", flags.join(", ")));
    }
    if name == same.0 {
        let anchor = same.1.replace(' ', "-");
        md.push_str(&format!("Its commands are [`{}`](#{anchor})'s.\n\n", same.1));
        return;
    }
    let mut globals: Vec<Arg> = inherited.to_vec();
    globals.extend(args.iter().filter(|a| a.is_global_set()).map(|a| (*a).clone()));
    for sub in subcommands {
        let sub = sub.clone().bin_name(format!("{name} {}", sub.get_name()));
        command(md, &sub, &globals, level + 1, same);
    }
}

/// A one-line synopsis: the command, its flags in brackets (`[OPTIONS]` for more than
/// three), its positionals, a subcommand.
fn usage(name: &str, args: &[&Arg], inherited: &[Arg], subcommands: &[&Command]) -> String {
    let mut parts = vec![name.to_string()];
    let flags: Vec<&Arg> = args
        .iter()
        .copied()
        .chain(inherited.iter())
        .filter(|a| !a.is_positional())
        .collect();
    if flags.len() > 3 {
        parts.push("[OPTIONS]".into());
    } else {
        for arg in flags {
            parts.push(if arg.is_required_set() {
                flag(arg)
            } else {
                format!("[{}]", flag(arg))
            });
        }
    }
    for arg in args.iter().filter(|a| a.is_positional()) {
        let value = value_name(arg);
        parts.push(if arg.is_required_set() {
            value
        } else {
            format!("[{value}]")
        });
    }
    if !subcommands.is_empty() {
        parts.push("COMMAND".into());
    }
    parts.join(" ")
}

fn row(arg: &Arg) -> String {
    let name = if arg.is_positional() {
        value_name(arg)
    } else {
        flag(arg)
    };
    let env = arg
        .get_env()
        .map(|e| code(&e.to_string_lossy()))
        .unwrap_or_default();
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| code(&v.to_string_lossy()))
        .collect();
    let values: Vec<String> = if is_switch(arg) {
        Vec::new()
    } else {
        arg.get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| code(v.get_name()))
            .collect()
    };
    let mut about = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    // clap drops the closing full stop of a one-line help; what follows needs it back.
    if !about.is_empty() && !about.ends_with(['.', ')', '!', '?']) {
        about.push('.');
    }
    if is_switch(arg) {
        about.push_str(" A switch: give the flag, or set the variable to `true`.");
    }
    if matches!(arg.get_action(), ArgAction::Append) {
        about.push_str(" Repeatable");
        if let Some(d) = arg.get_value_delimiter() {
            about.push_str(&format!(
                "; the environment variable holds a list separated by `{d}`"
            ));
        }
        about.push('.');
    }
    if arg.is_global_set() {
        about.push_str(" Applies to every subcommand.");
    }
    if arg.is_required_set() && !arg.is_positional() {
        about.push_str(" Required.");
    }
    format!(
        "| {} | {env} | {} | {} | {} |\n",
        code(&name),
        defaults.join(", "),
        values.join(", "),
        cell(&about)
    )
}

/// `--name VALUE`, `-n, --name VALUE`, or `--flag` for a switch.
fn flag(arg: &Arg) -> String {
    let mut names = Vec::new();
    if let Some(s) = arg.get_short() {
        names.push(format!("-{s}"));
    }
    if let Some(l) = arg.get_long() {
        names.push(format!("--{l}"));
    }
    let names = names.join(", ");
    if is_switch(arg) {
        names
    } else {
        format!("{names} {}", value_name(arg))
    }
}

/// A flag that takes no value.
fn is_switch(arg: &Arg) -> bool {
    matches!(
        arg.get_action(),
        ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
    )
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_show_their_environment_default_and_repeatability() {
        let cmd = Command::new("x")
            .arg(
                Arg::new("cidr")
                    .long("allow-cidr")
                    .env("X_CIDRS")
                    .value_delimiter(',')
                    .action(ArgAction::Append)
                    .help("Ranges."),
            )
            .arg(Arg::new("on").long("on").action(ArgAction::SetTrue))
            .arg(Arg::new("level").long("level").default_value("info"));
        let args: Vec<&Arg> = cmd.get_arguments().collect();
        assert_eq!(
            row(args[0]),
            "| `--allow-cidr CIDR` | `X_CIDRS` |  |  | Ranges. Repeatable; the environment variable holds a list separated by `,`. |\n"
        );
        assert_eq!(flag(args[1]), "--on");
        assert!(row(args[1]).contains("| A switch"), "{}", row(args[1]));
        assert_eq!(
            usage("x", &args, &[], &[]),
            "x [--allow-cidr CIDR] [--on] [--level LEVEL]"
        );
    }
}
