// Hand-written bnnc primitive: a two-entry register slice (skid buffer) on a valid/ready stream.
// in_ready, out_valid and out_data come straight from flip-flops, so no combinational path runs
// from one side to the other; it still passes one word per clock. When the output stalls, the word
// already accepted waits in the skid register and in_ready falls on the next edge.
module bnnc_skid #(
    parameter W = 8
) (
    input  wire         clk,
    input  wire         rst,        // synchronous, active high
    input  wire         in_valid,
    output reg          in_ready,
    input  wire [W-1:0] in_data,
    output reg          out_valid,
    input  wire         out_ready,
    output reg  [W-1:0] out_data
);
    reg         skid_valid;
    reg [W-1:0] skid_data;
    wire take  = in_valid && in_ready;
    wire moves = !out_valid || out_ready;  // the output register is free at this edge

    always @(posedge clk) begin
        if (rst) begin
            in_ready   <= 1'b0;
            out_valid  <= 1'b0;
            skid_valid <= 1'b0;
        end else if (moves) begin
            out_valid  <= skid_valid || take;
            skid_valid <= 1'b0;
            in_ready   <= 1'b1;
        end else begin
            skid_valid <= skid_valid || take;
            in_ready   <= !(skid_valid || take);
        end
        if (moves)
            out_data <= skid_valid ? skid_data : in_data;
        // in_ready is high exactly when the skid register is empty (after the first clock), so it
        // may take every word offered then and keep the one taken when the output stalls: its
        // wide enable is a flip-flop, not logic on out_ready (the registered digits CNV's
        // critical path ran through that logic at 91 MHz)
        if (in_ready)
            skid_data <= in_data;
    end
endmodule
