//! `assetd secret encrypt` and `assetd secret recipients`: the age files
//! of `decrypt: age`, for operators who do not have the `age` tool.

use std::io::Write;
use std::path::{Path, PathBuf};

use assetd::input::stack::encrypted::{self, AgeKeys};

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum SecretCommand {
    /// Encrypt FILE to the given recipients (the public keys of the
    /// managers' identities), as the `age` tool would.
    Encrypt {
        file: PathBuf,
        /// An age public key (age1...); repeatable.
        #[arg(
            long = "recipient",
            short = 'r',
            required = true,
            value_name = "AGE1..."
        )]
        recipients: Vec<String>,
        /// Write ASCII armor (PEM-like text) instead of binary.
        #[arg(long, short = 'a')]
        armor: bool,
        /// Where to write (default: FILE.age; `-` for stdout). An existing
        /// file is never overwritten.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Say how many recipients an age file has and which of this
    /// machine's identities open it, without decrypting its content.
    Recipients {
        file: PathBuf,
        /// Identity files to try (default: /etc/assetd/age.key if present).
        #[arg(long = "age-identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
    },
}

pub(crate) fn run(command: SecretCommand) -> u8 {
    match command {
        SecretCommand::Encrypt {
            file,
            recipients,
            armor,
            output,
        } => encrypt(&file, &recipients, armor, output),
        SecretCommand::Recipients { file, identities } => recipients(&file, identities),
    }
}

fn encrypt(file: &Path, recipients: &[String], armor: bool, output: Option<PathBuf>) -> u8 {
    let plaintext = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("assetd secret encrypt: {}: {e}", file.display());
            return EXIT_USAGE;
        }
    };
    let sealed = match encrypted::encrypt(&plaintext, recipients, armor) {
        Ok(sealed) => sealed,
        Err(e) => {
            eprintln!("assetd secret encrypt: {e}");
            return EXIT_USAGE;
        }
    };
    let output = output.unwrap_or_else(|| {
        let mut name = file.as_os_str().to_owned();
        name.push(".age");
        PathBuf::from(name)
    });
    if output == Path::new("-") {
        return match std::io::stdout().write_all(&sealed) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("assetd secret encrypt: stdout: {e}");
                EXIT_FAILED
            }
        };
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&output)
        .and_then(|mut out| out.write_all(&sealed));
    match written {
        Ok(()) => {
            println!(
                "wrote {} for {} recipient(s); commit it, and keep {} out of git",
                output.display(),
                recipients.len(),
                file.display()
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("assetd secret encrypt: {}: {e}", output.display());
            EXIT_FAILED
        }
    }
}

fn recipients(file: &Path, identities: Vec<PathBuf>) -> u8 {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("assetd secret recipients: {}: {e}", file.display());
            return EXIT_USAGE;
        }
    };
    let stanzas = match encrypted::stanzas(&bytes) {
        Ok(stanzas) => stanzas,
        Err(why) => {
            eprintln!("assetd secret recipients: {} {why}", file.display());
            return EXIT_FAILED;
        }
    };
    let armored = bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----");
    println!(
        "{}: an age file ({}), {} recipient(s)",
        file.display(),
        if armored { "armored" } else { "binary" },
        stanzas.len()
    );
    for stanza in &stanzas {
        match stanza.kind.as_str() {
            "X25519" => println!("  X25519 (age keeps the recipient's key out of the file)"),
            kind => println!(
                "  {kind} {}",
                stanza.args.first().map_or("", String::as_str)
            ),
        }
    }
    let keys = match AgeKeys::given(identities).load() {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("assetd secret recipients: {e}");
            return EXIT_FAILED;
        }
    };
    if keys.is_empty() {
        println!("no identity was read, so none was tried");
        return EXIT_OK;
    }
    let opened = encrypted::opened_by(&bytes, &keys);
    if opened.is_empty() {
        println!("no identity tried opens it:");
        for (path, public) in keys.recipients() {
            println!("  not {public} ({})", path.display());
        }
        return EXIT_FAILED;
    }
    println!("opened by:");
    for (path, public) in opened {
        println!("  {public} ({})", path.display());
    }
    EXIT_OK
}
