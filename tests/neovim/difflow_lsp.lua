-- What the Neovim scripts share (tests/neovim/lsp_client.lua, bench/lsp_neovim_latency.lua):
-- open $PIPELINE with a `difflow lsp` client ($DIFFLOW_BIN) attached, and at the end write
-- the result as JSON to $LSP_OUT, stop the client and quit.
local M = {}

-- The buffer and the client; `flags` are the client's flags (nil: Neovim's defaults).
function M.open(flags)
  local bin, file = os.getenv('DIFFLOW_BIN'), os.getenv('PIPELINE')
  vim.cmd('edit ' .. vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()
  local client = vim.lsp.start_client({
    name = 'difflow',
    cmd = { bin, 'lsp' },
    root_dir = vim.fn.fnamemodify(file, ':h'),
    flags = flags,
  })
  vim.lsp.buf_attach_client(buf, client)
  return buf, client
end

function M.finish(client, result)
  vim.fn.writefile({ vim.fn.json_encode(result) }, os.getenv('LSP_OUT'))
  vim.lsp.stop_client(client)
  vim.wait(5000, function() return vim.lsp.client_is_stopped(client) end, 10)
  vim.cmd('qa!')
end

return M
