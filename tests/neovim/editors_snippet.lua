-- Run after the Neovim set-up of docs/editors.md was loaded as init.lua: open the
-- pipeline $PIPELINE and the patch $PATCH, wait for the client and its diagnostics, and
-- write what Neovim holds as JSON to $LSP_OUT.
local function clients(buf)
  if vim.lsp.get_clients then
    return vim.lsp.get_clients({ bufnr = buf })
  end
  return vim.lsp.buf_get_clients(buf)
end

vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('PIPELINE')))
local buf = vim.api.nvim_get_current_buf()
vim.wait(60000, function() return #vim.diagnostic.get(buf) > 0 end, 50)
local names = {}
for _, c in pairs(clients(buf)) do
  table.insert(names, c.name)
end
local result = {
  filetype = vim.bo[buf].filetype,
  clients = names,
  diagnostics = #vim.diagnostic.get(buf),
}
vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('PATCH')))
local patch = vim.api.nvim_get_current_buf()
result.patch_filetype = vim.bo[patch].filetype
result.patch_clients = #clients(patch)
vim.fn.writefile({ vim.fn.json_encode(result) }, os.getenv('LSP_OUT'))
for _, c in pairs(clients(buf)) do
  c.stop()
end
vim.cmd('qa!')
