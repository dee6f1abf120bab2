-- Keystroke-to-diagnostics as Neovim shows it (run by bench/lsp_latency.rs): type a typo
-- into `steps` of the open pipeline and restore it, KEYSTROKES times, and time each
-- change from the buffer edit to Neovim's diagnostic list holding the answer for it.
-- didChange is sent without Neovim's debounce, so the figures are the server's plus the
-- client's own work. Writes {"typo": [ms...], "fix": [ms...]} to $LSP_OUT.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h')
local difflow = dofile(here .. '/../tests/neovim/difflow_lsp.lua')
local keystrokes = tonumber(os.getenv('KEYSTROKES'))

local published = 0
local default_handler = vim.lsp.handlers['textDocument/publishDiagnostics']
vim.lsp.handlers['textDocument/publishDiagnostics'] = function(...)
  default_handler(...)
  published = published + 1
end

local buf, client = difflow.open({ debounce_text_changes = 0 })
assert(vim.wait(60000, function() return published > 0 end, 1), 'no first diagnostics')

local row, col
for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
  local at = line:find('steps')
  if at then
    row, col = i - 1, at - 1
    break
  end
end

local function timed(letter, expected)
  local before = published
  local start = vim.loop.hrtime()
  vim.api.nvim_buf_set_text(buf, row, col + 1, row, col + 2, { letter })
  assert(vim.wait(60000, function()
    return published > before and #vim.diagnostic.get(buf) == expected
  end, 0), 'no diagnostics for the change')
  return (vim.loop.hrtime() - start) / 1e6
end

local result = { typo = {}, fix = {} }
for _ = 1, keystrokes do
  table.insert(result.typo, timed('b', 1))
  table.insert(result.fix, timed('t', 0))
end
difflow.finish(client, result)
