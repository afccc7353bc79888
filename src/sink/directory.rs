//! The directory sink: mappings as pretty JSON files, `<dir>/<namespace>/<stream>/<tag>.json`, and images
//! as `<dir>/_images/<name>.json` (the `_` prefix cannot be a namespace). Used by the embedded default
//! config and by `map`, so a pipeline can be tried without a cluster.
//!
//! Every write is atomic (temp file in the same directory, fsync, rename, fsync the directory), so a reader
//! sees the old file or the new one, never half of one. Names are validated before they become paths: no
//! name may escape the directory. Streams are created implicitly (directories are made on demand).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{
    SinkError, TagEventRef, mapping_target, validate_image_name, validate_namespace,
    validate_stream, validate_tag,
};
use crate::openshift::{Image, ImageStreamMapping};

/// Subdirectory for standalone Images; not a DNS-1123 label, so no namespace can collide with it.
pub const IMAGES_DIR: &str = "_images";
const JSON_SUFFIX: &str = ".json";
/// Temp files start with `.` and carry this marker, so they are never read back as a tag.
const TEMP_MARKER: &str = ".tmp-";

/// Writes mappings and images below one directory.
#[derive(Debug, Clone)]
pub struct DirectorySink {
    dir: PathBuf,
}

impl DirectorySink {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the mapping for a tag lives (names are validated first).
    pub fn mapping_path(
        &self,
        namespace: &str,
        stream: &str,
        tag: &str,
    ) -> Result<PathBuf, SinkError> {
        validate_namespace(namespace)?;
        validate_stream(stream)?;
        validate_tag(tag)?;
        Ok(self
            .dir
            .join(namespace)
            .join(stream)
            .join(format!("{tag}{JSON_SUFFIX}")))
    }

    /// Where a standalone Image lives: `:` becomes `_` so the file name is portable.
    pub fn image_path(&self, name: &str) -> Result<PathBuf, SinkError> {
        validate_image_name(name)?;
        let file = format!("{}{JSON_SUFFIX}", name.replace(':', "_"));
        Ok(self.dir.join(IMAGES_DIR).join(file))
    }

    /// The image and reference of the mapping file for this tag; `None` when there is none.
    pub async fn current_tag(
        &self,
        namespace: &str,
        stream: &str,
        tag: &str,
    ) -> Result<Option<TagEventRef>, SinkError> {
        let path = self.mapping_path(namespace, stream, tag)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SinkError::Io(e)),
        };
        let mapping: ImageStreamMapping =
            serde_json::from_slice(&bytes).map_err(SinkError::Serialize)?;
        Ok(Some(TagEventRef {
            image: mapping.image.metadata.name,
            docker_image_reference: mapping.image.docker_image_reference,
        }))
    }

    /// Write the mapping to `<namespace>/<stream>/<tag>.json`, replacing any previous one atomically.
    pub async fn create_mapping(&self, mapping: &ImageStreamMapping) -> Result<(), SinkError> {
        let (namespace, stream, tag) = mapping_target(mapping)?;
        let path = self.mapping_path(namespace, stream, tag)?;
        let bytes = to_pretty_json(mapping)?;
        write_atomically(path, bytes).await?;
        tracing::debug!(namespace, stream, tag, "mapping written");
        Ok(())
    }

    /// Write `_images/<name>.json`. An existing file is left as it is: images are immutable once created.
    pub async fn create_image(&self, image: &Image) -> Result<(), SinkError> {
        let path = self.image_path(&image.metadata.name)?;
        if tokio::fs::try_exists(&path).await.map_err(SinkError::Io)? {
            return Ok(());
        }
        write_atomically(path, to_pretty_json(image)?).await
    }

    /// The directory exists (created if missing) and a file can be written and removed in it.
    pub async fn ping(&self) -> Result<(), SinkError> {
        let dir = self.dir.clone();
        blocking(move || {
            create_dir_durably(&dir)?;
            let probe = temp_path(&dir.join("ping"));
            File::create(&probe)?;
            fs::remove_file(&probe)
        })
        .await
    }
}

fn to_pretty_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, SinkError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(SinkError::Serialize)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A hidden, unique sibling of `path` (same directory, so the rename is atomic).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}{TEMP_MARKER}{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Temp file in the same directory, fsync, rename over `path`, fsync the directory.
async fn write_atomically(path: PathBuf, bytes: Vec<u8>) -> Result<(), SinkError> {
    blocking(move || {
        let parent = path
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
        create_dir_durably(parent)?;
        let temp = temp_path(&path);
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &path)
        })();
        if let Err(e) = written {
            // Best effort: the temp file is hidden and never read back, so a leftover is harmless.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        File::open(parent)?.sync_all()
    })
    .await
}

/// `mkdir -p` that also fsyncs the parent of every directory it creates, so a new stream directory
/// survives a power cut together with the file renamed into it.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    match parent {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Run blocking file work off the async threads.
async fn blocking(work: impl FnOnce() -> io::Result<()> + Send + 'static) -> Result<(), SinkError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SinkError::Io(io::Error::other(e)))?
        .map_err(SinkError::Io)
}
