-- Small shims over API differences between Neovim 0.10, 0.11 and 0.12.
local M = {}

M.uv = vim.uv or vim.loop

M.has_builtin_inline = vim.lsp.inline_completion ~= nil
  and type(vim.lsp.inline_completion.enable) == "function"

local is_011 = vim.fn.has("nvim-0.11") == 1

--- Client request that works with the 0.10 field function and the 0.11+ method.
function M.request(client, method, params, handler, bufnr)
  if is_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.cancel(client, id)
  if is_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

function M.notify(client, method, params)
  if is_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.stop(client, force)
  if is_011 then
    return client:stop(force)
  end
  return client.stop(force)
end

--- Byte column in `line` of an LSP character offset in `encoding` ("utf-8"|"utf-16"|"utf-32").
function M.byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  if is_011 then
    return vim.str_byteindex(line, encoding, character, false)
  end
  local ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  return ok and col or #line
end

function M.get_clients(filter)
  return (vim.lsp.get_clients or vim.lsp.get_active_clients)(filter)
end

return M
