// Hand-written bnnc primitive: the output queue of a registered matrix-vector unit (--registered).
// Unlike bnnc_fifo nothing falls through: out_valid and out_data come from registers (out_data
// through a DEPTH:1 mux), so no path runs from the unit's datapath into the next unit, and the
// next unit's ready reaches only the read side. It has no in_ready: the writer counts its free
// places itself from registers (the layer's `pending`), so a write never finds it full.
module bnnc_queue #(
    parameter W     = 8,
    parameter DEPTH = 2
) (
    input  wire         clk,
    input  wire         rst,        // synchronous, active high
    input  wire         in_valid,
    input  wire [W-1:0] in_data,
    output wire         out_valid,
    input  wire         out_ready,
    output wire [W-1:0] out_data
);
    localparam AW = DEPTH > 1 ? $clog2(DEPTH) : 1;  // address bits
    localparam CW = $clog2(DEPTH + 1);              // count bits: 0 .. DEPTH
    localparam integer LAST_I = DEPTH - 1;
    localparam [AW-1:0] LAST = LAST_I[AW-1:0];
    localparam [AW-1:0] A1   = 1;
    localparam [CW-1:0] C1   = 1;

    reg [W-1:0]  words [0:DEPTH-1];
    reg [AW-1:0] head, tail;
    reg [CW-1:0] count;
    assign out_valid = count != {CW{1'b0}};
    assign out_data  = words[head];
    wire pop = out_valid && out_ready;

    always @(posedge clk) begin
        if (rst) begin
            head  <= {AW{1'b0}};
            tail  <= {AW{1'b0}};
            count <= {CW{1'b0}};
        end else begin
            if (in_valid)
                tail <= tail == LAST ? {AW{1'b0}} : tail + A1;
            if (pop)
                head <= head == LAST ? {AW{1'b0}} : head + A1;
            if (in_valid && !pop)
                count <= count + C1;
            else if (pop && !in_valid)
                count <= count - C1;
        end
        if (in_valid)
            words[tail] <= in_data;
    end
endmodule
