-- Neovim 0.12+ path of editors/nvim, run on 0.11 with vim.lsp.inline_completion recorded by a
-- stand-in (its documented API: enable(enable, {bufnr}), get({bufnr}) -> accepted?, select({bufnr,
-- count})). Checks the plugin's wiring to it against the real server: enabled on attach, <Tab>
-- accepts through get() or stays a Tab, <M-]>/<M-[> select. Run by test_neovim.py.
local env = vim.env
local h = dofile(env.INFILL_REPO .. "/tests/editors/nvim_harness.lua")
local report = h.report
report.calls = {}
h.start(60000)

local accept_result = false
vim.lsp.inline_completion = {
  enable = function(enable, filter) table.insert(report.calls, { "enable", enable, filter and filter.bufnr }) end,
  get = function(opts) table.insert(report.calls, { "get", opts and opts.bufnr }); return accept_result end,
  select = function(opts) table.insert(report.calls, { "select", opts and opts.bufnr, opts and opts.count }) end,
  is_enabled = function() return true end,
}

vim.opt.rtp:prepend(env.INFILL_REPO .. "/editors/nvim")
vim.cmd("filetype on")
vim.o.swapfile = false
-- No `cmd`: the plugin finds `infill-ls` on PATH, as in the README.
require("infill").setup({
  server = { model = env.INFILL_TEST_MODEL, device = "cpu" },
})
vim.cmd("edit " .. vim.fn.fnameescape(env.INFILL_WORKDIR .. "/wiring.py"))
local buf = vim.api.nvim_get_current_buf()
report.buf = buf

local sleep, keys = h.sleep, h.keys

vim.schedule(function()
  h.run(function()
    h.wait_for("the server to attach", function()
      return (vim.lsp.get_clients({ bufnr = buf, name = "infill-ls" })[1] or {}).initialized
    end, 30000)
    sleep(50)
    report.after_attach = vim.deepcopy(report.calls)
    report.cmd = vim.lsp.get_clients({ bufnr = buf, name = "infill-ls" })[1].config.cmd
    keys("ix<Tab>")           -- nothing to accept: a real Tab
    sleep(50)
    report.line_after_plain_tab = vim.api.nvim_get_current_line()
    accept_result = true
    keys("<Tab>")             -- a suggestion: get() takes it, no Tab inserted
    sleep(50)
    report.line_after_accept = vim.api.nvim_get_current_line()
    keys("<M-]><M-[><Esc>")
    local waited_keys = 0  -- a busy machine may take longer than a fixed pause to run the mappings
    while #report.calls < 5 and waited_keys < 3000 do
      sleep(20)
      waited_keys = waited_keys + 20
    end
  end)
end)
