//! `mmring create`: a new ring file from the command-line options.

use mmring::Options;

use crate::cli::CreateArgs;
use crate::{AtPath, Failure, Outcome};

/// Creates the ring; with `--force`, replaces a file already at the path.
pub(crate) fn run(args: &CreateArgs) -> Outcome {
    let path = &args.path;
    if args.force {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(Failure::Usage {
                    what: path.display().to_string(),
                    message: "is a directory; --force replaces only files".to_owned(),
                });
            }
            Ok(_) => std::fs::remove_file(path).map_err(|error| Failure::Io {
                what: path.display().to_string(),
                error,
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(Failure::Io {
                    what: path.display().to_string(),
                    error,
                });
            }
        }
    }
    Options::new()
        .size(args.size)
        .ttl(args.ttl)
        .on_full(args.on_full.into())
        .mode(args.mode)
        .abandon_timeout(args.abandon_timeout)
        .create(path)
        .at(path)?;
    Ok(())
}
