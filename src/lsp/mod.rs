//! `difflow lsp`: a language server over stdio. Diagnostics come from the checker of
//! `difflow check` on every change (open buffers stand in for their files, also for files
//! reached through `use`); hover and completion read the schema; navigation reads the
//! syntax trees of the last check; formatting is `difflow fmt`.
//!
//! Messages are handled in order on one thread. Changes only mark buffers dirty; the
//! check runs when no message is waiting (so a burst of keystrokes costs one check) or
//! before a request that reads it.

mod analysis;
mod completion;
mod context;
mod documents;
mod edits;
mod hover;
mod model_size;
mod navigation;
mod nodes;
mod position;
mod transport;

use std::collections::{BTreeSet, HashMap};

use lsp_server::{ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{self as notif, Notification as _};
use lsp_types::request::{self as req, Request as _};
use lsp_types::{
    CodeActionKind, CodeActionProviderCapability, CompletionOptions, InitializeParams, InitializeResult, OneOf,
    PositionEncodingKind, PublishDiagnosticsParams, ServerCapabilities, ServerInfo, TextDocumentPositionParams,
    TextDocumentSyncCapability, TextDocumentSyncKind, Url,
};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use analysis::Analysis;
use documents::Documents;
pub use model_size::CountParameters;
use position::{Encoding, LineIndex};
use transport::Outbox;

/// Serve until the client says `exit` or closes stdin. Returns the process exit code:
/// 0 after a `shutdown` request, 1 otherwise (as the protocol asks). `count_parameters`
/// answers hover's question for a model's size.
pub fn serve_stdio(count_parameters: CountParameters) -> u8 {
    let (out, incoming) = transport::stdio();
    let mut server = Server::new(out, count_parameters);
    while let Ok(msg) = incoming.recv() {
        if let Some(code) = server.handle(msg) {
            return code;
        }
        while let Ok(msg) = incoming.try_recv() {
            if let Some(code) = server.handle(msg) {
                return code;
            }
        }
        server.check_dirty();
    }
    if server.state == State::ShutDown {
        0
    } else {
        1
    }
}

#[derive(PartialEq, Eq)]
enum State {
    Uninitialized,
    Running,
    ShutDown,
}

type Failure = (ErrorCode, String);

struct Server {
    out: Outbox,
    state: State,
    encoding: Encoding,
    docs: Documents,
    analyses: HashMap<Url, Analysis>,
    dirty: BTreeSet<Url>,
    model_sizes: model_size::ModelSizes,
}

impl Server {
    fn new(out: Outbox, count_parameters: CountParameters) -> Self {
        Server {
            out,
            state: State::Uninitialized,
            encoding: Encoding::Utf16,
            docs: Documents::default(),
            analyses: HashMap::new(),
            dirty: BTreeSet::new(),
            model_sizes: model_size::ModelSizes::new(count_parameters),
        }
    }

    /// Handle one message; `Some(exit code)` when the server must stop.
    fn handle(&mut self, msg: Message) -> Option<u8> {
        match msg {
            Message::Request(r) => {
                let id = r.id.clone();
                let method = r.method.clone();
                // A bug in one handler answers that request with an error; the server
                // and its buffers live on.
                let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.request(r)))
                    .unwrap_or_else(|_| Err((ErrorCode::InternalError, format!("difflow lsp failed on `{method}`"))));
                let response = match answer {
                    Ok(result) => Response::new_ok(id, result),
                    Err((code, message)) => Response::new_err(id, code as i32, message),
                };
                self.out.send(Message::Response(response));
                None
            }
            Message::Notification(n) if n.method == notif::Exit::METHOD => {
                Some(if self.state == State::ShutDown { 0 } else { 1 })
            }
            Message::Notification(n) => {
                if self.state == State::Running {
                    if let Err((_, why)) = self.notification(n) {
                        self.show_message(&why);
                    }
                }
                None
            }
            // The server sends no requests, so no response is awaited.
            Message::Response(_) => None,
        }
    }

    fn request(&mut self, r: Request) -> Result<Json, Failure> {
        match (&self.state, r.method.as_str()) {
            (State::Uninitialized, req::Initialize::METHOD) => return self.initialize(params(r.params)?),
            (State::Uninitialized, _) => {
                return Err((ErrorCode::ServerNotInitialized, "the server is not initialized yet".into()))
            }
            (_, req::Initialize::METHOD) => {
                return Err((ErrorCode::InvalidRequest, "the server is already initialized".into()))
            }
            (State::ShutDown, _) => return Err((ErrorCode::InvalidRequest, "the server is shut down".into())),
            (State::Running, req::Shutdown::METHOD) => {
                self.state = State::ShutDown;
                return Ok(Json::Null);
            }
            _ => {}
        }
        self.check_dirty();
        let result = match r.method.as_str() {
            req::HoverRequest::METHOD => {
                let p: lsp_types::HoverParams = params(r.params)?;
                let (a, offset) = self.at(&p.text_document_position_params)?;
                serde_json::to_value(hover::hover(a, offset, &self.model_sizes))
            }
            req::Completion::METHOD => {
                let p: lsp_types::CompletionParams = params(r.params)?;
                let (a, offset) = self.at(&p.text_document_position)?;
                serde_json::to_value(completion::complete(a, offset))
            }
            req::GotoDefinition::METHOD => {
                let p: lsp_types::GotoDefinitionParams = params(r.params)?;
                let (a, offset) = self.at(&p.text_document_position_params)?;
                serde_json::to_value(navigation::definition(a, offset))
            }
            req::References::METHOD => {
                let p: lsp_types::ReferenceParams = params(r.params)?;
                let (a, offset) = self.at(&p.text_document_position)?;
                serde_json::to_value(navigation::references(a, offset, p.context.include_declaration))
            }
            req::DocumentSymbolRequest::METHOD => {
                let p: lsp_types::DocumentSymbolParams = params(r.params)?;
                serde_json::to_value(navigation::symbols(self.analysis(&p.text_document.uri)?))
            }
            req::Formatting::METHOD => {
                let p: lsp_types::DocumentFormattingParams = params(r.params)?;
                let a = self.analysis(&p.text_document.uri)?;
                let edits = edits::format(a).map_err(|why| (ErrorCode::RequestFailed, why))?;
                serde_json::to_value(edits)
            }
            req::CodeActionRequest::METHOD => {
                let p: lsp_types::CodeActionParams = params(r.params)?;
                let uri = p.text_document.uri.clone();
                serde_json::to_value(edits::code_actions(self.analysis(&uri)?, &uri, p.range))
            }
            other => return Err((ErrorCode::MethodNotFound, format!("difflow lsp does not handle `{other}`"))),
        };
        result.map_err(|e| (ErrorCode::InternalError, e.to_string()))
    }

    fn initialize(&mut self, p: InitializeParams) -> Result<Json, Failure> {
        let offered = p.capabilities.general.and_then(|g| g.position_encodings).unwrap_or_default();
        self.encoding = if offered.contains(&PositionEncodingKind::UTF8) { Encoding::Utf8 } else { Encoding::Utf16 };
        self.state = State::Running;
        let result = InitializeResult {
            capabilities: capabilities(self.encoding),
            server_info: Some(ServerInfo { name: "difflow".into(), version: Some(env!("CARGO_PKG_VERSION").into()) }),
        };
        serde_json::to_value(result).map_err(|e| (ErrorCode::InternalError, e.to_string()))
    }

    fn notification(&mut self, n: Notification) -> Result<(), Failure> {
        match n.method.as_str() {
            notif::DidOpenTextDocument::METHOD => {
                let p: lsp_types::DidOpenTextDocumentParams = params(n.params)?;
                let doc = p.text_document;
                self.docs.open(doc.uri, doc.text, doc.version);
                self.mark_all_dirty();
            }
            notif::DidChangeTextDocument::METHOD => {
                let p: lsp_types::DidChangeTextDocumentParams = params(n.params)?;
                let doc = p.text_document;
                self.docs
                    .change(&doc.uri, doc.version, p.content_changes, self.encoding)
                    .map_err(|why| (ErrorCode::InvalidParams, why))?;
                self.mark_all_dirty();
            }
            notif::DidCloseTextDocument::METHOD => {
                let p: lsp_types::DidCloseTextDocumentParams = params(n.params)?;
                let uri = p.text_document.uri;
                self.docs.close(&uri);
                self.analyses.remove(&uri);
                self.dirty.remove(&uri);
                self.publish(uri, Vec::new(), None);
                self.mark_all_dirty();
            }
            _ => {}
        }
        Ok(())
    }

    /// A buffer's text is read by every buffer that uses its file: check them all again.
    fn mark_all_dirty(&mut self) {
        self.dirty.extend(self.docs.uris().cloned());
    }

    fn check_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let overlay = self.docs.overlay();
        for uri in std::mem::take(&mut self.dirty) {
            let Some(doc) = self.docs.get(&uri) else { continue };
            let a = analysis::analyze(&uri, doc, overlay.clone(), self.encoding);
            let version = doc.version;
            self.publish(uri.clone(), a.diagnostics(), Some(version));
            self.analyses.insert(uri, a);
        }
    }

    fn publish(&self, uri: Url, diagnostics: Vec<lsp_types::Diagnostic>, version: Option<i32>) {
        let p = PublishDiagnosticsParams { uri, diagnostics, version };
        self.out.send(Message::Notification(Notification::new(notif::PublishDiagnostics::METHOD.into(), p)));
    }

    fn show_message(&self, message: &str) {
        let p = lsp_types::ShowMessageParams { typ: lsp_types::MessageType::ERROR, message: message.into() };
        self.out.send(Message::Notification(Notification::new(notif::ShowMessage::METHOD.into(), p)));
    }

    fn analysis(&self, uri: &Url) -> Result<&Analysis, Failure> {
        self.analyses.get(uri).ok_or_else(|| (ErrorCode::InvalidParams, format!("{uri} is not open")))
    }

    /// The analysis of a buffer and the byte offset of a position in it.
    fn at(&self, p: &TextDocumentPositionParams) -> Result<(&Analysis, usize), Failure> {
        let a = self.analysis(&p.text_document.uri)?;
        let offset = LineIndex::new(a.text(analysis::ROOT), self.encoding).offset(p.position);
        Ok((a, offset))
    }
}

fn params<P: DeserializeOwned>(value: Json) -> Result<P, Failure> {
    serde_json::from_value(value).map_err(|e| (ErrorCode::InvalidParams, format!("invalid params: {e}")))
}

fn capabilities(encoding: Encoding) -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(match encoding {
            Encoding::Utf8 => PositionEncodingKind::UTF8,
            Encoding::Utf16 => PositionEncodingKind::UTF16,
        }),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::INCREMENTAL)),
        hover_provider: Some(lsp_types::HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["\"".into(), "/".into()]),
            ..Default::default()
        }),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Options(lsp_types::CodeActionOptions {
            code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
            ..Default::default()
        })),
        ..Default::default()
    }
}
