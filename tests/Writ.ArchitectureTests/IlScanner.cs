using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace Writ.ArchitectureTests;

/// <summary>
/// One method reference in IL: <see cref="Caller"/> (the outermost type whose code it is: lambdas, iterators and async
/// state machines count as their enclosing type's) calls, constructs or takes a delegate to <see cref="Target"/>
/// (full type name) <see cref="Method"/>. <see cref="File"/>/<see cref="Line"/> come from the PDB's sequence points,
/// relative to the repository root when the file is in it; null when the assembly came without a PDB.
/// </summary>
public sealed record IlUse(string Assembly, string Caller, string Target, string Method, string? File, int Line)
{
    public string Where => File is null ? $"{Caller} ({Assembly})" : $"{File}:{Line} ({Caller})";
}

/// <summary>
/// Reads every method body of an assembly and reports each method it references (call, callvirt, newobj, ldftn,
/// ldvirtftn, jmp). Works on what the compiler produced, so a using alias, a target-typed <c>new(...)</c>, a method
/// group turned into a delegate or a <c>using static</c> cannot hide a use, and comments and strings never count.
/// </summary>
public static class IlScanner
{
    private static readonly OpCode?[] OneByte = new OpCode?[256];
    private static readonly OpCode?[] TwoByte = new OpCode?[256];

    static IlScanner()
    {
        foreach (var field in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            var op = (OpCode)field.GetValue(null)!;
            var value = (ushort)op.Value;
            if (value < 0x100)
                OneByte[value] = op;
            else if ((value & 0xFF00) == 0xFE00)
                TwoByte[value & 0xFF] = op;
        }
    }

    public static IEnumerable<IlUse> Scan(Stream pe, Stream? pdb, string? repoRoot)
    {
        using var peReader = new PEReader(pe, PEStreamOptions.LeaveOpen);
        using var pdbProvider = pdb is null ? null : MetadataReaderProvider.FromPortablePdbStream(pdb, MetadataStreamOptions.LeaveOpen);
        var md = peReader.GetMetadataReader();
        var debug = pdbProvider?.GetMetadataReader();
        var assembly = md.GetString(md.GetAssemblyDefinition().Name);
        var uses = new List<IlUse>();
        foreach (var typeHandle in md.TypeDefinitions)
        {
            var caller = OutermostName(md, typeHandle);
            foreach (var methodHandle in md.GetTypeDefinition(typeHandle).GetMethods())
            {
                var method = md.GetMethodDefinition(methodHandle);
                if (method.RelativeVirtualAddress == 0)
                    continue;
                var il = peReader.GetMethodBody(method.RelativeVirtualAddress).GetILBytes()!;
                var points = debug is null ? [] : SequencePoints(debug, methodHandle);
                foreach (var (offset, token) in MethodOperands(il))
                {
                    if (Resolve(md, MetadataTokens.EntityHandle(token)) is not var (target, name))
                        continue;
                    var (file, line) = Locate(debug, points, offset, repoRoot);
                    uses.Add(new IlUse(assembly, caller, target, name, file, line));
                }
            }
        }
        return uses;
    }

    /// <summary>The types an assembly defines that implement the interface named (full name), e.g. a store's implementations.</summary>
    public static IEnumerable<string> Implementers(Stream pe, string interfaceFullName)
    {
        using var peReader = new PEReader(pe, PEStreamOptions.LeaveOpen);
        var md = peReader.GetMetadataReader();
        var found = new List<string>();
        foreach (var typeHandle in md.TypeDefinitions)
            foreach (var impl in md.GetTypeDefinition(typeHandle).GetInterfaceImplementations())
                if (TypeName(md, md.GetInterfaceImplementation(impl).Interface) == interfaceFullName)
                    found.Add(TypeName(md, typeHandle)!);
        return found;
    }

    /// <summary>The native imports (DllImport, and what LibraryImport generates) an assembly declares: (outermost type, method, library).</summary>
    public static IEnumerable<(string Type, string Method, string Library)> NativeImports(Stream pe)
    {
        using var peReader = new PEReader(pe, PEStreamOptions.LeaveOpen);
        var md = peReader.GetMetadataReader();
        var found = new List<(string, string, string)>();
        foreach (var typeHandle in md.TypeDefinitions)
            foreach (var methodHandle in md.GetTypeDefinition(typeHandle).GetMethods())
            {
                var method = md.GetMethodDefinition(methodHandle);
                if ((method.Attributes & MethodAttributes.PinvokeImpl) == 0)
                    continue;
                var import = method.GetImport();
                var library = import.Module.IsNil ? "" : md.GetString(md.GetModuleReference(import.Module).Name);
                found.Add((OutermostName(md, typeHandle), md.GetString(method.Name), library));
            }
        return found;
    }

    // (IL offset of the instruction, metadata token) for every instruction whose operand is a method.
    private static IEnumerable<(int Offset, int Token)> MethodOperands(byte[] il)
    {
        var i = 0;
        while (i < il.Length)
        {
            var start = i;
            var b = il[i++];
            var op = b == 0xFE ? TwoByte[il[i++]] : OneByte[b];
            if (op is not { } code)
                throw new BadImageFormatException($"unknown IL opcode 0x{b:x2} at offset {start}");
            var size = code.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + (4 * BitConverter.ToInt32(il, i)),
                _ => 4,
            };
            if (code.OperandType == OperandType.InlineMethod)
                yield return (start, BitConverter.ToInt32(il, i));
            i += size;
        }
    }

    private static (string Type, string Method)? Resolve(MetadataReader md, EntityHandle handle)
    {
        switch (handle.Kind)
        {
            case HandleKind.MethodDefinition:
                var def = md.GetMethodDefinition((MethodDefinitionHandle)handle);
                return (TypeName(md, def.GetDeclaringType())!, md.GetString(def.Name));
            case HandleKind.MemberReference:
                var member = md.GetMemberReference((MemberReferenceHandle)handle);
                return TypeName(md, member.Parent) is { } parent ? (parent, md.GetString(member.Name)) : null;
            case HandleKind.MethodSpecification:
                return Resolve(md, md.GetMethodSpecification((MethodSpecificationHandle)handle).Method);
            default:
                return null;
        }
    }

    // Full name of a type definition, reference or (generic instance) specification; nested types as Outer+Inner.
    private static string? TypeName(MetadataReader md, EntityHandle handle)
    {
        switch (handle.Kind)
        {
            case HandleKind.TypeDefinition:
                var def = md.GetTypeDefinition((TypeDefinitionHandle)handle);
                var outer = def.GetDeclaringType();
                return outer.IsNil ? Join(md.GetString(def.Namespace), md.GetString(def.Name)) : $"{TypeName(md, outer)}+{md.GetString(def.Name)}";
            case HandleKind.TypeReference:
                var reference = md.GetTypeReference((TypeReferenceHandle)handle);
                return reference.ResolutionScope.Kind == HandleKind.TypeReference
                    ? $"{TypeName(md, (TypeReferenceHandle)reference.ResolutionScope)}+{md.GetString(reference.Name)}"
                    : Join(md.GetString(reference.Namespace), md.GetString(reference.Name));
            case HandleKind.TypeSpecification:
                // A generic instance (Foo<T>): its blob is GENERICINST CLASS|VALUETYPE TypeDefOrRef ...
                var blob = md.GetBlobReader(md.GetTypeSpecification((TypeSpecificationHandle)handle).Signature);
                if (blob.ReadSignatureTypeCode() != SignatureTypeCode.GenericTypeInstance)
                    return null;
                blob.ReadSignatureTypeCode();
                return TypeName(md, blob.ReadTypeHandle());
            default:
                return null;
        }
    }

    private static string Join(string ns, string name) => ns.Length == 0 ? name : $"{ns}.{name}";

    private static string OutermostName(MetadataReader md, TypeDefinitionHandle handle)
    {
        while (md.GetTypeDefinition(handle).GetDeclaringType() is { IsNil: false } outer)
            handle = outer;
        return TypeName(md, handle)!;
    }

    private static SequencePoint[] SequencePoints(MetadataReader debug, MethodDefinitionHandle method)
    {
        var info = debug.GetMethodDebugInformation(method.ToDebugInformationHandle());
        return info.SequencePointsBlob.IsNil ? [] : [.. info.GetSequencePoints()];
    }

    // The source line of the last visible sequence point at or before the offset (the statement the instruction is in).
    private static (string? File, int Line) Locate(MetadataReader? debug, SequencePoint[] points, int offset, string? repoRoot)
    {
        if (debug is null || points.Length == 0)
            return (null, 0);
        SequencePoint? best = null;
        foreach (var p in points)
            if (p.Offset <= offset && !p.IsHidden)
                best = p;
        var chosen = best ?? points.FirstOrDefault(p => !p.IsHidden);
        if (chosen.Document.IsNil)
            return (null, 0);
        var path = debug.GetString(debug.GetDocument(chosen.Document).Name).Replace('\\', '/');
        return (Relative(path, repoRoot), chosen.IsHidden ? 0 : chosen.StartLine);
    }

    private static string Relative(string path, string? repoRoot)
    {
        if (repoRoot is not null)
        {
            var root = repoRoot.Replace('\\', '/').TrimEnd('/') + "/";
            if (path.StartsWith(root, StringComparison.Ordinal))
                return path[root.Length..];
        }
        // Deterministic CI builds map the source root to /_/.
        return path.StartsWith("/_/", StringComparison.Ordinal) ? path[3..] : path;
    }
}
