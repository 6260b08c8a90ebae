// Compiled driver of bnnc_bench.v: the same bench as under cocotb (tb_stream.py), clocked from
// C++ instead of through VPI, so Verilator needs no public signals and keeps its optimisations.
// Plusargs are the bench's; "+waves=FILE" (builds with --trace only) dumps a VCD (FST would need liblz4 headers).
#include <memory>
#include <string>

#include "Vbnnc_bench.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

int main(int argc, char** argv) {
    const auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    const auto bench = std::make_unique<Vbnnc_bench>(context.get());
    // Half of tb_stream.py's 10 ns clock, in the simulation's time precision (--timescale).
    uint64_t half_period = 5;
    for (int unit = -9; unit > context->timeprecision(); --unit) half_period *= 10;
#if VM_TRACE
    std::unique_ptr<VerilatedVcdC> waves;
    const std::string file = context->commandArgsPlusMatch("waves=");
    if (!file.empty()) {
        context->traceEverOn(true);
        waves = std::make_unique<VerilatedVcdC>();
        bench->trace(waves.get(), 99);
        waves->open(file.substr(std::string("+waves=").size()).c_str());
    }
#endif
    bench->clk = 1;  // like cocotb's Clock: high at time 0, rising edges at 10 ns, 20 ns, ...
    while (!bench->done && !context->gotFinish()) {
        bench->eval();
#if VM_TRACE
        if (waves) waves->dump(context->time());
#endif
        context->timeInc(half_period);
        bench->clk = !bench->clk;
    }
    bench->eval();
    bench->final();
#if VM_TRACE
    if (waves) waves->close();
#endif
    return 0;
}
