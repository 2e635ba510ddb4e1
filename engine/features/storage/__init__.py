"""File storage behind a small interface: the bytes of uploads, kept outside the event log.

The log records that a file was uploaded (`file_upload_complete` with size and sha256); the bytes live
here, addressed by the client's file id. `FileStorage` is the interface the REST upload
(`PUT /api/v1/files/{file_id}`) and download use; `LocalFileStorage` keeps files in a local folder
(`DATA_DIR/files` by default). `sniff_mime`, `declared_type_matches` and `served_content_type` are
the content-type policy.

Errors (all `EngineError`s with a stable `code`, for the api's one translation table):

    TooLarge              PAYLOAD_TOO_LARGE  the body crossed `max_bytes`; nothing was kept
    InvalidFileId         VALIDATION_ERROR   an id that is not a safe storage key; disk never touched
    ContentTypeMismatch   VALIDATION_ERROR   the declared MIME type contradicts the bytes; nothing kept
    FileNotFound          NOT_FOUND          no stored file under that id
"""

from engine.features.storage.base import (
    MAX_FILE_ID_LENGTH,
    ContentTypeMismatch,
    FileNotFound,
    FileStorage,
    FileStream,
    InvalidFileId,
    ProgressCallback,
    StagedFile,
    StoredFile,
    TooLarge,
    validate_file_id,
)
from engine.features.storage.local import LocalFileStorage
from engine.features.storage.mime import (
    SNIFF_BYTES,
    declared_type_matches,
    resolve_content_type,
    served_content_type,
    sniff_mime,
)

__all__ = [
    "MAX_FILE_ID_LENGTH",
    "SNIFF_BYTES",
    "ContentTypeMismatch",
    "FileNotFound",
    "FileStorage",
    "FileStream",
    "InvalidFileId",
    "LocalFileStorage",
    "ProgressCallback",
    "StagedFile",
    "StoredFile",
    "TooLarge",
    "declared_type_matches",
    "resolve_content_type",
    "served_content_type",
    "sniff_mime",
    "validate_file_id",
]
