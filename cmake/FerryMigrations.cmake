# ferry_embed_migrations(<out var> <C++ namespace> <function> <dir>): generates a .cc returning
# the numbered .sql files of <dir> (see embed_migrations.cmake) and sets <out var> to its path.
function(ferry_embed_migrations out_var namespace function dir)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${function}.cc)
  file(GLOB sql CONFIGURE_DEPENDS ${dir}/*.sql)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DNAMESPACE=${namespace} -DFUNCTION=${function}
            -DDIR=${dir} -P ${PROJECT_SOURCE_DIR}/cmake/embed_migrations.cmake
    DEPENDS ${sql} ${PROJECT_SOURCE_DIR}/cmake/embed_migrations.cmake
    VERBATIM)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
