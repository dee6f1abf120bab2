// Starts `difflow lsp` for difflow buffers; everything else comes from the server.
const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration('difflow').get('path') || 'difflow';
  client = new LanguageClient(
    'difflow',
    'difflow',
    { command, args: ['lsp'] },
    { documentSelector: [{ scheme: 'file', language: 'difflow' }, { scheme: 'untitled', language: 'difflow' }] },
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
