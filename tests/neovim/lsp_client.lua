-- Drives Neovim's built-in LSP client against `difflow lsp` (run by tests/lsp_neovim.rs):
-- open a pipeline with a typo, wait for the diagnostic in Neovim's own list, then ask
-- for completion and hover through Neovim's API. Writes what Neovim saw as JSON to
-- $LSP_OUT and quits. Works with Neovim 0.7 (Debian 12) and later.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h')
local difflow = dofile(here .. '/difflow_lsp.lua')
local result = { diagnostics = {}, completion = {}, hover = vim.NIL }

local buf, client = difflow.open(nil)

result.diagnostics_arrived = vim.wait(20000, function() return #vim.diagnostic.get(buf) > 0 end, 20)
for _, d in ipairs(vim.diagnostic.get(buf)) do
  local lsp = d.user_data and d.user_data.lsp or {}
  table.insert(result.diagnostics, {
    lnum = d.lnum, col = d.col, end_col = d.end_col,
    message = d.message, source = d.source, code = d.code or lsp.code,
  })
end

-- The first answer of the first client to a request at (line, character), 0-based.
local function ask(method, line, character)
  local params = {
    textDocument = vim.lsp.util.make_text_document_params(buf),
    position = { line = line, character = character },
  }
  local answers = vim.lsp.buf_request_sync(buf, method, params, 10000) or {}
  for _, answer in pairs(answers) do
    return answer.result
  end
end

-- Completion right after the opening quote of `loss     = "simple"` (line 9, 0-based).
local line = vim.api.nvim_buf_get_lines(buf, 9, 10, false)[1]
local items = ask('textDocument/completion', 9, line:find('"')) or {}
for _, item in ipairs(items.items or items) do
  table.insert(result.completion, item.label)
end

-- Hover on `schedule` in `schedule cos = cosine { steps = 1000 }` (line 3).
local hover = ask('textDocument/hover', 3, 2)
if hover then
  result.hover = hover.contents.value
end

difflow.finish(client, result)
