//! SQS's errors: one type, with the JSON `__type`, the query-protocol code and AWS's message.

/// An SQS error as AWS answers it. `shape` is the JSON protocol's `__type` (botocore's error
/// shape), `code` the query protocol's `<Code>` and the `x-amzn-query-error` header's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsError {
    pub shape: &'static str,
    pub code: &'static str,
    pub message: String,
    pub status: u16,
}

impl SqsError {
    fn new(shape: &'static str, code: &'static str, message: impl Into<String>) -> SqsError {
        SqsError { shape, code, message: message.into(), status: 400 }
    }

    pub fn non_existent_queue() -> SqsError {
        SqsError::new(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.",
        )
    }

    pub fn invalid_parameter(message: impl Into<String>) -> SqsError {
        SqsError::new("InvalidParameterValueException", "InvalidParameterValue", message)
    }

    /// `Value X for parameter P is invalid. Reason: R`
    pub fn invalid_value(value: impl std::fmt::Display, parameter: &str, reason: &str) -> SqsError {
        SqsError::invalid_parameter(format!("Value {value} for parameter {parameter} is invalid. Reason: {reason}"))
    }

    /// A message longer than the queue's MaximumMessageSize.
    pub fn message_too_long(max_size: u64) -> SqsError {
        SqsError::invalid_parameter(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {max_size} bytes."
        ))
    }

    /// The error as a batch entry's failure: AWS words a too-long entry differently there
    /// ("cannot be validated" for "are invalid").
    pub fn in_batch(mut self) -> SqsError {
        if let Some(rest) = self.message.strip_prefix("One or more parameters are invalid. Reason: Message must be") {
            self.message = format!("One or more parameters cannot be validated. Reason: Message must be{rest}");
        }
        self
    }

    pub fn missing_parameter(name: &str) -> SqsError {
        SqsError::new(
            "MissingRequiredParameterException",
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    }

    pub fn invalid_attribute_name(message: impl Into<String>) -> SqsError {
        SqsError::new("InvalidAttributeName", "InvalidAttributeName", message)
    }

    pub fn invalid_attribute_value(message: impl Into<String>) -> SqsError {
        SqsError::new("InvalidAttributeValue", "InvalidAttributeValue", message)
    }

    pub fn queue_exists(attribute: &str) -> SqsError {
        SqsError::new(
            "QueueNameExists",
            "QueueAlreadyExists",
            format!("A queue already exists with the same name and a different value for attribute {attribute}"),
        )
    }

    pub fn receipt_handle_invalid(handle: &str) -> SqsError {
        SqsError::new(
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
        )
    }

    pub fn receipt_handle_expired(handle: &str) -> SqsError {
        SqsError::invalid_value(handle, "ReceiptHandle", "The receipt handle has expired.")
    }

    /// ChangeMessageVisibility of a message that is gone (deleted, moved, purged). AWS
    /// answers InvalidParameterValue here, not its model's MessageNotInflight.
    pub fn message_not_available(handle: &str) -> SqsError {
        SqsError::invalid_value(
            handle,
            "ReceiptHandle",
            "Message does not exist or is not available for visibility timeout change.",
        )
    }

    pub fn invalid_message_contents() -> SqsError {
        SqsError::new(
            "InvalidMessageContents",
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        )
    }

    pub fn empty_batch(entry_name: &str) -> SqsError {
        SqsError::new(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            format!("There should be at least one {entry_name} in the request."),
        )
    }

    pub fn too_many_entries(n: usize) -> SqsError {
        SqsError::new(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!("Maximum number of entries per request are 10. You have sent {n}."),
        )
    }

    pub fn batch_ids_not_distinct(id: &str) -> SqsError {
        SqsError::new(
            "BatchEntryIdsNotDistinct",
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            format!("Id {id} repeated."),
        )
    }

    pub fn invalid_batch_entry_id() -> SqsError {
        SqsError::new(
            "InvalidBatchEntryId",
            "AWS.SimpleQueueService.InvalidBatchEntryId",
            "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
        )
    }

    pub fn batch_too_long(limit: usize, sent: usize) -> SqsError {
        SqsError::new(
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            format!("Batch requests cannot be longer than {limit} bytes. You have sent {sent} bytes."),
        )
    }

    pub fn purge_in_progress(name: &str) -> SqsError {
        SqsError {
            status: 403,
            ..SqsError::new(
                "PurgeQueueInProgress",
                "AWS.SimpleQueueService.PurgeQueueInProgress",
                format!("Only one PurgeQueue operation on {name} is allowed every 60 seconds."),
            )
        }
    }

    pub fn unsupported_operation(message: impl Into<String>) -> SqsError {
        SqsError::new("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", message)
    }

    pub fn invalid_action(action: &str) -> SqsError {
        SqsError::new("InvalidAction", "InvalidAction", format!("The action {action} is not valid for this endpoint."))
    }

    pub fn malformed(message: impl Into<String>) -> SqsError {
        SqsError::new("MalformedInput", "MalformedInput", message)
    }

    pub fn internal(message: impl Into<String>) -> SqsError {
        SqsError { status: 500, ..SqsError::new("InternalFailure", "InternalFailure", message) }
    }

    /// `Sender` for client errors, `Receiver` for server errors.
    pub fn fault(&self) -> &'static str {
        if self.status >= 500 { "Receiver" } else { "Sender" }
    }
}

/// The query protocol's message for an unknown queue (AWS's JSON protocol drops the suffix).
pub const NON_EXISTENT_QUEUE_QUERY: &str = "The specified queue does not exist for this wsdl version.";

impl std::fmt::Display for SqsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SqsError {}
